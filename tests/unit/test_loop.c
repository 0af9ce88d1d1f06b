/* The event loop: timers fire in due order, stopped timers never fire,
 * fd callbacks get their events, the wake fd runs its callback. Timers run
 * on a fake clock (loop_set_clock), so the tests take no wall time. */
#include "check.h"
#include "clock.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_FIRED 4096

struct probe {
    struct timer t;
    int id;
};

/* What fired, in order: the ids of the probes. */
static int fired[MAX_FIRED];
static uint64_t fired_at[MAX_FIRED];
static size_t nfired;
static uint64_t fake_ns;
static struct loop *cur; /* the loop under test, for callbacks that act on it */

static uint64_t fake_clock(void *ud)
{
    return *(uint64_t *)ud;
}

static void record(struct timer *t)
{
    if (nfired < MAX_FIRED) {
        fired[nfired] = ((struct probe *)t)->id;
        fired_at[nfired++] = loop_now(cur);
    }
}

static struct loop *fake_loop(uint64_t start_ns)
{
    struct loop *l = loop_new();
    fake_ns = start_ns;
    loop_set_clock(l, fake_clock, &fake_ns);
    nfired = 0;
    cur = l;
    return l;
}

/* Moves the fake time to each due timer in turn up to `until`, running the
 * loop there (never waiting: the clock is ours). */
static void advance_to(struct loop *l, uint64_t until)
{
    for (uint64_t due; (due = loop_next_due(l)) <= until;) {
        if (due > fake_ns)
            fake_ns = due;
        loop_run_once(l, 0);
    }
    fake_ns = until;
    loop_run_once(l, 0);
}

static void test_clock_seam(void)
{
    struct loop *l = fake_loop(5000);
    CHECK(loop_now(l) == 5000);
    fake_ns = 7000;
    CHECK(loop_now(l) == 5000); /* read at wake-ups only */
    CHECK(loop_refresh_now(l) == 7000 && loop_now(l) == 7000);
    CHECK(loop_next_due(l) == UINT64_MAX);
    loop_set_clock(l, NULL, NULL);
    uint64_t real = clock_now_ns();
    CHECK(loop_refresh_now(l) >= real && loop_now(l) - real < NS_PER_SEC);
    loop_free(l);
}

/* Armed out of order, they fire in order of due time, each at its time. */
static void test_timers_in_order(void)
{
    struct loop *l = fake_loop(1000);
    static const uint64_t due[] = {50, 10, 40, 30, 20, 60, 5, 45, 15, 25};
    enum { N = sizeof due / sizeof due[0] };
    struct probe p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct probe){.t.fire = record, .id = (int)due[i]};
        timer_start(l, &p[i].t, 1000 + due[i]);
        CHECK(timer_armed(&p[i].t));
    }
    CHECK(loop_next_due(l) == 1005);
    advance_to(l, 1030);
    CHECK(nfired == 6);
    for (size_t i = 0; i < nfired; i++)
        CHECK(fired_at[i] == 1000 + (uint64_t)fired[i]);
    advance_to(l, 2000);
    CHECK(nfired == N);
    for (size_t i = 1; i < nfired; i++)
        CHECK(fired[i - 1] < fired[i]);
    for (int i = 0; i < N; i++)
        CHECK(!timer_armed(&p[i].t));
    CHECK(loop_next_due(l) == UINT64_MAX);
    loop_free(l);
}

/* A timer due in the past fires at the next round; one not due yet does not. */
static void test_due_boundaries(void)
{
    struct loop *l = fake_loop(1000);
    struct probe past = {.t.fire = record, .id = 1}, now = {.t.fire = record, .id = 2},
                 later = {.t.fire = record, .id = 3};
    timer_start(l, &past.t, 10);
    timer_start(l, &now.t, 1000);
    timer_start(l, &later.t, 1001);
    loop_run_once(l, 0);
    CHECK(nfired == 2 && fired[0] == 1 && fired[1] == 2);
    CHECK(timer_armed(&later.t));
    loop_free(l);
}

/* A stopped timer never fires; stopping one from the middle of the heap
 * keeps the others in order; re-arming moves a timer. */
static void test_cancellation(void)
{
    struct loop *l = fake_loop(0);
    enum { N = 200 };
    struct probe p[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        p[i] = (struct probe){.t.fire = record, .id = i};
        timer_start(l, &p[i].t, 1 + (uint64_t)(rand() % 1000) * 1000 + (uint64_t)i); /* distinct */
    }
    for (int i = 0; i < N; i += 3)
        timer_stop(l, &p[i].t);
    timer_stop(l, &p[0].t); /* twice: a no-op */
    CHECK(!timer_armed(&p[0].t) && !timer_armed(&p[3].t) && timer_armed(&p[1].t));
    timer_start(l, &p[1].t, 2000000); /* re-armed: moves, not a second entry */
    advance_to(l, 3000000);
    size_t expect = N - (N + 2) / 3;
    CHECK(nfired == expect);
    for (size_t i = 0; i < nfired; i++)
        CHECK(fired[i] % 3 != 0);
    for (size_t i = 1; i < nfired; i++)
        CHECK(p[fired[i - 1]].t.due_ns <= p[fired[i]].t.due_ns);
    CHECK(nfired && fired[nfired - 1] == 1); /* the moved one fires last, once */
    loop_free(l);
}

static struct probe *victim;

static void stop_victim(struct timer *t)
{
    record(t);
    timer_stop(cur, &victim->t);
}

/* A timer stopped by another's callback in the same round does not fire. */
static void test_stop_while_firing(void)
{
    struct loop *l = fake_loop(0);
    struct probe a = {.t.fire = stop_victim, .id = 1}, b = {.t.fire = record, .id = 2};
    victim = &b;
    timer_start(l, &a.t, 10);
    timer_start(l, &b.t, 10);
    timer_start(l, &b.t, 11);
    advance_to(l, 100);
    CHECK(nfired == 1 && fired[0] == 1);
    loop_free(l);
}

static void rearm_now(struct timer *t)
{
    record(t);
    timer_start(cur, t, loop_now(cur));
}

/* A timer that re-arms itself at "now" waits for the next round, so it
 * cannot starve the sockets. */
static void test_rearm_at_now(void)
{
    struct loop *l = fake_loop(0);
    struct probe p = {.t.fire = rearm_now, .id = 1};
    timer_start(l, &p.t, 0);
    loop_run_once(l, 0);
    CHECK(nfired == 1);
    loop_run_once(l, 0);
    CHECK(nfired == 2);
    timer_stop(l, &p.t);
    loop_free(l);
}

/* Many timers with equal and random due times: the heap gives them back
 * sorted, and none is lost. */
static void test_heap_stress(void)
{
    struct loop *l = fake_loop(0);
    enum { N = 3000 };
    struct probe *p = calloc(N, sizeof *p);
    srand(11);
    for (int i = 0; i < N; i++) {
        p[i] = (struct probe){.t.fire = record, .id = i};
        timer_start(l, &p[i].t, 1 + (uint64_t)(rand() % 50));
    }
    for (int i = 0; i < N; i += 7) /* re-arm some, stop some */
        timer_start(l, &p[i].t, 1 + (uint64_t)(rand() % 50));
    for (int i = 5; i < N; i += 11)
        timer_stop(l, &p[i].t);
    size_t stopped = 0;
    for (int i = 5; i < N; i += 11)
        stopped++;
    advance_to(l, 100);
    if (CHECK(nfired == (size_t)N - stopped))
        for (size_t i = 1; i < nfired; i++)
            CHECK(fired_at[i - 1] <= fired_at[i] && p[fired[i]].t.due_ns == fired_at[i]);
    free(p);
    loop_free(l);
}

/* ---- fds ---- */

struct fd_probe {
    int calls, fd;
    uint32_t events;
};

static void on_fd(void *ud, int fd, uint32_t events)
{
    struct fd_probe *p = ud;
    p->calls++;
    p->fd = fd;
    p->events = events;
    char buf[64];
    if (events & EPOLLIN)
        while (read(fd, buf, sizeof buf) > 0)
            ;
}

static void test_fd_callbacks(void)
{
    struct loop *l = loop_new(); /* the real clock: epoll waits for real */
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    struct fd_probe rd = {0}, wr = {0};
    CHECK(loop_watch(l, p[0], EPOLLIN, on_fd, &rd));
    loop_run_once(l, 0);
    CHECK(rd.calls == 0);
    CHECK(write(p[1], "x", 1) == 1);
    loop_run_once(l, NS_PER_SEC);
    CHECK(rd.calls == 1 && rd.fd == p[0] && (rd.events & EPOLLIN));
    loop_run_once(l, 0); /* drained: level-triggered, but nothing to read */
    CHECK(rd.calls == 1);

    /* parked: no callback while unwatched; watching again costs no epoll call */
    loop_unwatch(l, p[0]);
    CHECK(write(p[1], "y", 1) == 1);
    loop_run_once(l, 0);
    CHECK(rd.calls == 1);
    CHECK(loop_watch(l, p[0], EPOLLIN, on_fd, &rd));
    loop_run_once(l, 0);
    CHECK(rd.calls == 2 && (rd.events & EPOLLIN));

    /* the writable end, and a change of callback and interest on the same fd */
    CHECK(loop_watch(l, p[1], EPOLLOUT, on_fd, &wr));
    loop_run_once(l, 0);
    CHECK(wr.calls == 1 && wr.fd == p[1] && (wr.events & EPOLLOUT));
    loop_unwatch(l, p[1]);
    loop_forget(l, p[1]);
    close(p[1]);
    loop_run_once(l, 0); /* the reader sees the hang-up */
    CHECK(rd.calls == 3 && (rd.events & EPOLLHUP));
    loop_forget(l, p[0]);
    close(p[0]);
    CHECK(wr.calls == 1);
    loop_free(l);
}

/* An fd watched beyond the initial table (256) grows it. */
static void test_fd_high_numbers(void)
{
    struct loop *l = loop_new();
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    int high = fcntl(p[0], F_DUPFD_CLOEXEC, 700);
    if (high < 0 && errno == EINVAL) { /* an fd limit below 701: nothing to test */
        close(p[0]);
        close(p[1]);
        loop_free(l);
        return;
    }
    if (CHECK(high >= 700)) {
        struct fd_probe rd = {0};
        CHECK(loop_watch(l, high, EPOLLIN, on_fd, &rd));
        CHECK(write(p[1], "z", 1) == 1);
        loop_run_once(l, NS_PER_SEC);
        CHECK(rd.calls == 1 && rd.fd == high);
        loop_forget(l, high);
        close(high);
    }
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

/* ---- the wake fd ---- */

static void on_wake(void *ud)
{
    (*(int *)ud)++;
}

static void *waker(void *arg)
{
    loop_wake(*(int *)arg);
    return NULL;
}

static void test_wake(void)
{
    struct loop *l = loop_new();
    int wakes = 0;
    loop_on_wake(l, on_wake, &wakes);
    loop_run_once(l, 0);
    CHECK(wakes == 0);
    int fd = loop_wake_fd(l);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waker, &fd) == 0);
    pthread_join(t, NULL);
    loop_wake(fd); /* two writes, one wake-up: the counter is drained */
    uint64_t before = clock_now_ns();
    loop_run_once(l, 5 * NS_PER_SEC);
    CHECK(wakes == 1 && clock_now_ns() - before < NS_PER_SEC);
    loop_run_once(l, 0);
    CHECK(wakes == 1);
    loop_free(l);
}

/* With the real clock, a timer wakes the wait in time, not at max_wait. */
static void test_real_timer_wait(void)
{
    struct loop *l = loop_new();
    cur = l;
    nfired = 0;
    struct probe p = {.t.fire = record, .id = 1};
    uint64_t start = loop_refresh_now(l);
    timer_start(l, &p.t, start + 20 * NS_PER_MS);
    while (!nfired && loop_refresh_now(l) - start < 2 * NS_PER_SEC)
        loop_run_once(l, 5 * NS_PER_SEC);
    uint64_t took = clock_now_ns() - start;
    CHECK(nfired == 1 && took >= 20 * NS_PER_MS && took < NS_PER_SEC);
    loop_free(l);
}

int main(void)
{
    test_clock_seam();
    test_timers_in_order();
    test_due_boundaries();
    test_cancellation();
    test_stop_while_firing();
    test_rearm_at_now();
    test_heap_stress();
    test_fd_callbacks();
    test_fd_high_numbers();
    test_wake();
    test_real_timer_wait();
    return check_report("loop");
}
