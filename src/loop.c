#include "loop.h"
#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct watch {
    loop_fd_fn fn;
    void *ud;
    uint32_t wanted;      /* what the owner asked for; 0 = parked */
    uint32_t registered;  /* what epoll has; 0 = not in epoll */
};

struct loop {
    int epfd;
    int wakefd;
    void (*wake_fn)(void *);
    void *wake_ud;
    uint64_t now;
    struct watch *watches;
    size_t nwatches;
    struct timer **heap;
    size_t heap_len, heap_cap;
    bool no_pwait2;
    uint64_t (*clock)(void *ud);    /* NULL: CLOCK_MONOTONIC; else a test's own clock */
    void *clock_ud;
    char *scratch;                  /* loop_scratch's */
    size_t scratch_len;
    void *slot[LOOP_SLOTS];         /* loop_slot_set's */
    void (*slot_free[LOOP_SLOTS])(void *);
};

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wakefd < 0) {
        loop_free(l);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->wakefd};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev);
    l->now = clock_now_ns();
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    free(l->watches);
    free(l->heap);
    free(l->scratch);
    for (int i = 0; i < LOOP_SLOTS; i++)
        if (l->slot_free[i])
            l->slot_free[i](l->slot[i]);
    free(l);
}

uint64_t loop_now(const struct loop *l) { return l->now; }

void *loop_slot_get(struct loop *l, enum loop_slot s)
{
    return l->slot[s];
}

void loop_slot_set(struct loop *l, enum loop_slot s, void *p, void (*free_fn)(void *))
{
    l->slot[s] = p;
    l->slot_free[s] = free_fn;
}

char *loop_scratch(struct loop *l, size_t len)
{
    if (l->scratch_len < len) {
        char *b = realloc(l->scratch, len);
        if (!b)
            return NULL;
        l->scratch = b;
        l->scratch_len = len;
    }
    return l->scratch;
}

uint64_t loop_refresh_now(struct loop *l)
{
    return l->now = l->clock ? l->clock(l->clock_ud) : clock_now_ns();
}

void loop_set_clock(struct loop *l, uint64_t (*now)(void *ud), void *ud)
{
    l->clock = now;
    l->clock_ud = ud;
    loop_refresh_now(l);
}

uint64_t loop_next_due(const struct loop *l)
{
    return l->heap_len ? l->heap[0]->due_ns : UINT64_MAX;
}
int loop_wake_fd(struct loop *l) { return l->wakefd; }

void loop_on_wake(struct loop *l, void (*fn)(void *), void *ud)
{
    l->wake_fn = fn;
    l->wake_ud = ud;
}

void loop_wake(int wake_fd)
{
    uint64_t one = 1;
    ssize_t n = write(wake_fd, &one, sizeof one);
    (void)n; /* a full counter already means "wake up" */
}

static struct watch *watch_slot(struct loop *l, int fd)
{
    if ((size_t)fd >= l->nwatches) {
        size_t n = l->nwatches ? l->nwatches : 256;
        while (n <= (size_t)fd)
            n *= 2;
        struct watch *w = realloc(l->watches, n * sizeof *w);
        if (!w)
            return NULL;
        memset(w + l->nwatches, 0, (n - l->nwatches) * sizeof *w);
        l->watches = w;
        l->nwatches = n;
    }
    return &l->watches[fd];
}

/* Our table may be stale when a library closed an fd behind our back, so
 * fall back from MOD to ADD and back. */
static bool epoll_set(int epfd, int fd, uint32_t events, bool known)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd, op, fd, &ev) == 0)
        return true;
    if (errno == ENOENT || errno == EEXIST)
        return epoll_ctl(epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) == 0;
    return false;
}

bool loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *ud)
{
    struct watch *w = watch_slot(l, fd);
    if (!w)
        return false;
    w->fn = fn;
    w->ud = ud;
    w->wanted = events;
    if (w->registered == events)
        return true;
    if (!epoll_set(l->epfd, fd, events, w->registered != 0))
        return false;
    w->registered = events;
    return true;
}

void loop_unwatch(struct loop *l, int fd)
{
    if ((size_t)fd < l->nwatches)
        l->watches[fd].wanted = 0;
}

void loop_forget(struct loop *l, int fd)
{
    if ((size_t)fd < l->nwatches)
        memset(&l->watches[fd], 0, sizeof l->watches[fd]);
}

/* ---- timer heap (1-based positions stored in heap_idx) ---- */

static void heap_place(struct loop *l, size_t i, struct timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due_ns <= t->due_ns)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len && l->heap[c + 1]->due_ns < l->heap[c]->due_ns)
            c++;
        if (t->due_ns <= l->heap[c]->due_ns)
            break;
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, t);
}

void timer_stop(struct loop *l, struct timer *t)
{
    if (!t->heap_idx)
        return;
    size_t i = t->heap_idx - 1;
    t->heap_idx = 0;
    struct timer *last = l->heap[--l->heap_len];
    if (last == t)
        return;
    heap_place(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_idx - 1);
}

void timer_start(struct loop *l, struct timer *t, uint64_t due_ns)
{
    timer_stop(l, t);
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        struct timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            abort(); /* a timer we cannot arm would hang a user forever */
        l->heap = h;
        l->heap_cap = cap;
    }
    t->due_ns = due_ns;
    l->heap[l->heap_len++] = t;
    heap_up(l, l->heap_len - 1);
}

static void run_timers(struct loop *l)
{
    /* Timers armed while firing wait for the next round, so a timer that
     * re-arms itself at "now" cannot starve the sockets. */
    uint64_t now = l->now;
    unsigned budget = (unsigned)l->heap_len;
    while (l->heap_len && l->heap[0]->due_ns <= now && budget--) {
        struct timer *t = l->heap[0];
        timer_stop(l, t);
        t->fire(t);
    }
}

static uint64_t wait_ns(const struct loop *l, uint64_t max_wait_ns)
{
    uint64_t wait = max_wait_ns;
    if (l->heap_len) {
        uint64_t due = l->heap[0]->due_ns;
        uint64_t until = due > l->now ? due - l->now : 0;
        if (until < wait)
            wait = until;
    }
    return wait;
}

/* epoll_pwait2 takes a timespec: timers fire to the microsecond, which an
 * open-model schedule needs (epoll_wait would round every wait to 1 ms). */
static int wait_events(struct loop *l, struct epoll_event *evs, int max, uint64_t ns)
{
    if (!l->no_pwait2) {
        struct timespec ts = {(time_t)(ns / NS_PER_SEC), (long)(ns % NS_PER_SEC)};
        int n = epoll_pwait2(l->epfd, evs, max, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        l->no_pwait2 = true; /* kernel before 5.11 */
    }
    return epoll_wait(l->epfd, evs, max, (int)((ns + NS_PER_MS - 1) / NS_PER_MS));
}

static void drain_wake(struct loop *l)
{
    uint64_t v;
    while (read(l->wakefd, &v, sizeof v) > 0)
        ;
    if (l->wake_fn)
        l->wake_fn(l->wake_ud);
}

void loop_run_once(struct loop *l, uint64_t max_wait_ns)
{
    struct epoll_event evs[256];
    int n = wait_events(l, evs, 256, wait_ns(l, max_wait_ns));
    loop_refresh_now(l);
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd == l->wakefd) {
            drain_wake(l);
            continue;
        }
        struct watch *w = (size_t)fd < l->nwatches ? &l->watches[fd] : NULL;
        if (!w || !w->wanted) {
            /* parked socket woke up (peer closed it): stop listening */
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
            if (w)
                w->registered = 0;
            continue;
        }
        w->fn(w->ud, fd, evs[i].events);
    }
    run_timers(l);
}

void loop_run_until(struct loop *l, const bool *done)
{
    loop_refresh_now(l);
    while (!*done)
        loop_run_once(l, NS_PER_SEC);
}
