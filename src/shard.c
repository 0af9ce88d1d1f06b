#include "curl_xfer.h"
#include "shard.h"
#include "clock.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct shard {
    CURLM *multi;
    struct loop *loop;
    struct timer timer;
};

static void collect_finished(struct shard *s)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        shard_remove(x);
        x->done(x, rc);
    }
}

static void on_socket_event(void *ud, int fd, uint32_t events)
{
    struct shard *s = ud;
    int mask = 0, running;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(s->multi, fd, mask, &running);
    collect_finished(s);
}

static void on_timer(struct timer *t)
{
    struct shard *s = (struct shard *)((char *)t - offsetof(struct shard, timer));
    int running;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_finished(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
    (void)easy;
    (void)sockp;
    struct shard *s = ud;
    static const uint32_t events[] = {
        [CURL_POLL_IN] = EPOLLIN,
        [CURL_POLL_OUT] = EPOLLOUT,
        [CURL_POLL_INOUT] = EPOLLIN | EPOLLOUT,
    };
    if (what == CURL_POLL_REMOVE)
        loop_unwatch(s->loop, fd);
    else if (what >= CURL_POLL_IN && what <= CURL_POLL_INOUT)
        loop_watch(s->loop, fd, events[what], on_socket_event, s);
    return 0;
}

/* libcurl's timeout is one-shot: -1 clears it, anything else replaces it. */
static int timer_cb(CURLM *multi, long timeout_ms, void *ud)
{
    (void)multi;
    struct shard *s = ud;
    if (timeout_ms < 0)
        timer_stop(s->loop, &s->timer);
    else
        timer_start(s->loop, &s->timer, loop_now(s->loop) + (uint64_t)timeout_ms * NS_PER_MS);
    return 0;
}

struct shard *shard_new(struct loop *l)
{
    struct shard *s = calloc(1, sizeof *s);
    if (!s || !(s->multi = curl_multi_init())) {
        free(s);
        return NULL;
    }
    s->loop = l;
    s->timer.fire = on_timer;
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    /* keep every user's connection alive between iterations */
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, 100000L);
    return s;
}

void shard_free(struct shard *s)
{
    if (!s)
        return;
    timer_stop(s->loop, &s->timer);
    curl_multi_cleanup(s->multi);
    free(s);
}

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)ud;
    (void)purpose;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* The only place we learn a socket really closed: drop its epoll record. */
static int close_socket(void *ud, curl_socket_t fd)
{
    loop_forget(ud, fd);
    return close(fd);
}

void shard_prepare_easy(struct xfer *x, struct loop *l)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, l);
}

bool shard_add(struct shard *s, struct xfer *x)
{
    x->shard = s;
    if (curl_multi_add_handle(s->multi, x->easy) != CURLM_OK)
        return false;
    x->active = true;
    return true;
}

void shard_remove(struct xfer *x)
{
    if (!x->active)
        return;
    x->active = false;
    curl_multi_remove_handle(x->shard->multi, x->easy);
}

