/* What libcurl alone does on this machine: keep-alive GETs from C, with no
 * Lua, no metrics, no cookies, no timeouts, no User-Agent, on tide's own
 * transport design (one epoll per thread, multi handles of at most PER_MULTI
 * connections driven by curl_multi_socket_action, sockets kept in epoll
 * between requests). No generator built on this libcurl can beat it.
 *
 *   bare-curl URL CONNECTIONS THREADS SECONDS
 *
 * Prints "requests N seconds S". tests/bench/vs-wrk.sh runs it beside wrk
 * and tide. Load goes only where URL points: give it a loopback address. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PER_MULTI 50 /* as src/engine.c's VUS_PER_SHARD */
#define MAX_FD 65536

struct worker;

struct shard {
    CURLM *multi;
    struct worker *w;
    double due; /* libcurl's timer, absolute; 0 = none */
};

struct worker {
    const char *url;
    int conns, epfd;
    double until;
    long long requests;
    int in_flight;
    int nshards;
    struct shard *shards;
    uint32_t *watched; /* epoll interest per fd, 0 = none */
    struct shard **owner;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
    (void)e;
    (void)sockp;
    struct shard *s = ud;
    struct worker *w = s->w;
    if (fd >= MAX_FD)
        return -1;
    if (what == CURL_POLL_REMOVE)
        return 0; /* parked: stays in epoll until closed */
    uint32_t ev = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    w->owner[fd] = s;
    if (w->watched[fd] == ev)
        return 0;
    struct epoll_event e2 = {.events = ev, .data.fd = fd};
    if (epoll_ctl(w->epfd, w->watched[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e2) != 0)
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e2);
    w->watched[fd] = ev;
    return 0;
}

static int on_timer(CURLM *m, long ms, void *ud)
{
    (void)m;
    ((struct shard *)ud)->due = ms < 0 ? 0 : now_s() + ms / 1e3;
    return 0;
}

static int close_socket(void *ud, curl_socket_t fd)
{
    struct worker *w = ud;
    if (fd < MAX_FD)
        w->watched[fd] = 0;
    return close(fd);
}

static void reap(struct shard *s)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        curl_multi_remove_handle(s->multi, e);
        s->w->in_flight--;
        if (m->data.result == CURLE_OK)
            s->w->requests++;
        if (now_s() < s->w->until && curl_multi_add_handle(s->multi, e) == CURLM_OK)
            s->w->in_flight++;
    }
}

static void open_shards(struct worker *w)
{
    w->nshards = (w->conns + PER_MULTI - 1) / PER_MULTI;
    w->shards = calloc((size_t)w->nshards, sizeof *w->shards);
    for (int i = 0; i < w->nshards; i++) {
        struct shard *s = &w->shards[i];
        s->w = w;
        s->multi = curl_multi_init();
        curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
        curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
        curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, 100000L);
    }
}

static void start_users(struct worker *w)
{
    for (int i = 0; i < w->conns; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, w->url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, -1L);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, w);
        if (curl_multi_add_handle(w->shards[i / PER_MULTI].multi, e) == CURLM_OK)
            w->in_flight++;
    }
}

static void dispatch_events(struct worker *w, double max_wait)
{
    struct epoll_event evs[256];
    int running;
    int n = epoll_wait(w->epfd, evs, 256, max_wait > 0 ? (int)(max_wait * 1e3) : 0);
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        struct shard *s = w->owner[fd];
        int mask = (evs[i].events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                   (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0);
        curl_multi_socket_action(s->multi, fd, mask, &running);
        reap(s);
    }
}

static void fire_timers(struct worker *w)
{
    int running;
    double t = now_s();
    for (int i = 0; i < w->nshards; i++) {
        struct shard *s = &w->shards[i];
        if (s->due && s->due <= t) {
            s->due = 0;
            curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            reap(s);
        }
    }
}

static void *work(void *arg)
{
    struct worker *w = arg;
    w->epfd = epoll_create1(0);
    w->watched = calloc(MAX_FD, sizeof *w->watched);
    w->owner = calloc(MAX_FD, sizeof *w->owner);
    open_shards(w);
    start_users(w);
    /* bounded: the last transfers get 5 s to finish */
    while (w->in_flight > 0 && now_s() < w->until + 5) {
        double t = now_s(), next = t + 0.1;
        for (int i = 0; i < w->nshards; i++)
            if (w->shards[i].due && w->shards[i].due < next)
                next = w->shards[i].due;
        dispatch_events(w, next - t);
        fire_timers(w);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bare-curl URL CONNECTIONS THREADS SECONDS\n");
        return 2;
    }
    int conns = atoi(argv[2]), threads = atoi(argv[3]);
    double secs = atof(argv[4]);
    if (conns < 1 || threads < 1 || secs <= 0) {
        fprintf(stderr, "bare-curl: bad arguments\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    double start = now_s();
    for (int t = 0; t < threads; t++) {
        ws[t].url = argv[1];
        ws[t].conns = conns / threads + (t < conns % threads);
        ws[t].until = start + secs;
        pthread_create(&tids[t], NULL, work, &ws[t]);
    }
    long long total = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        total += ws[t].requests;
    }
    printf("requests %lld seconds %.2f\n", total, now_s() - start);
    return 0;
}
