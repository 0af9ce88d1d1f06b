#ifndef TIDE_LOOPBACK_H
#define TIDE_LOOPBACK_H
/* A listening socket on 127.0.0.1 at a port the kernel picks, for the unit
 * tests' own little servers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

static inline bool loopback_listen(int *fd, unsigned *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(*fd, 8) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &len) != 0)
        return false;
    *port = ntohs(a.sin_port);
    return true;
}

#endif
