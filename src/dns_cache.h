#ifndef TIDE_DNS_CACHE_H
#define TIDE_DNS_CACHE_H
/* Host names looked up for the lean HTTP transport, kept per engine thread
 * for 60 s as libcurl's cache keeps them, so a thread's users ask the
 * resolver once per host and port, not once each. The lookup itself is
 * glibc's getaddrinfo on the calling thread: instant for /etc/hosts names
 * (localhost), a round trip to the DNS server otherwise. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

#define DNS_MAX_ADDRS 8
#define DNS_TTL_NS (60ull * 1000000000ull)

struct dns_entry {
    unsigned n;                                  /* addresses, in the resolver's order */
    struct sockaddr_storage addr[DNS_MAX_ADDRS];
    socklen_t len[DNS_MAX_ADDRS];
};

/* The addresses of host:port (a name, not a literal address), from the
 * loop's cache or looked up now (now_ns: the loop's clock); NULL when the
 * name does not resolve or memory ran out (*nomem says which). Valid until
 * the next call on this loop. */
const struct dns_entry *dns_lookup(struct loop *l, const char *host, unsigned port, uint64_t now_ns, bool *nomem);

#endif
