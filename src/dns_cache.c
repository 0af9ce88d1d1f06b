#include "dns_cache.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_SLOTS 64    /* hosts a thread remembers; a load test names a few */

struct dns_slot {
    char *host;                 /* NULL: free */
    unsigned port;
    uint64_t expires_ns;
    struct dns_entry e;
};

struct dns_cache {
    struct dns_slot slot[DNS_SLOTS];
    unsigned next;              /* the slot a new name takes when none is free or expired */
};

static void cache_free(void *p)
{
    struct dns_cache *c = p;
    for (unsigned i = 0; c && i < DNS_SLOTS; i++)
        free(c->slot[i].host);
    free(c);
}

static struct dns_cache *cache_of(struct loop *l)
{
    struct dns_cache *c = loop_slot_get(l, LOOP_SLOT_DNS);
    if (!c && (c = calloc(1, sizeof *c)))
        loop_slot_set(l, LOOP_SLOT_DNS, c, cache_free);
    return c;
}

static bool resolve_into(struct dns_entry *e, const char *host, unsigned port)
{
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, service, &hints, &ai) != 0 || !ai)
        return false;
    e->n = 0;
    for (struct addrinfo *a = ai; a && e->n < DNS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof e->addr[0])
            continue;
        memcpy(&e->addr[e->n], a->ai_addr, a->ai_addrlen);
        e->len[e->n++] = a->ai_addrlen;
    }
    freeaddrinfo(ai);
    return e->n > 0;
}

const struct dns_entry *dns_lookup(struct loop *l, const char *host, unsigned port, uint64_t now_ns, bool *nomem)
{
    struct dns_cache *c = cache_of(l);
    *nomem = c == NULL;
    if (!c)
        return NULL;
    struct dns_slot *use = NULL;
    for (unsigned i = 0; i < DNS_SLOTS; i++) {
        struct dns_slot *s = &c->slot[i];
        if (s->host && s->port == port && strcmp(s->host, host) == 0) {
            if (now_ns < s->expires_ns)
                return &s->e;
            use = s;
            break;
        }
        if (!use && (!s->host || now_ns >= s->expires_ns))
            use = s;
    }
    if (!use)
        use = &c->slot[c->next++ % DNS_SLOTS];
    if (!use->host || strcmp(use->host, host) != 0) {
        free(use->host);
        if (!(use->host = strdup(host))) {
            *nomem = true;
            return NULL;
        }
    }
    use->port = port;
    if (!resolve_into(&use->e, host, port)) {
        free(use->host);
        use->host = NULL; /* a failure is not kept: the next request asks again */
        return NULL;
    }
    use->expires_ns = now_ns + DNS_TTL_NS;
    return &use->e;
}
