#ifndef TIDE_LOOP_H
#define TIDE_LOOP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One event loop per thread: epoll for sockets, a binary heap for timers. */
struct loop;

struct timer {
    uint64_t due_ns;        /* absolute, CLOCK_MONOTONIC */
    size_t heap_idx;        /* 0 = not armed; else position + 1 */
    void (*fire)(struct timer *t);
};

typedef void (*loop_fd_fn)(void *ud, int fd, uint32_t events);

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Interest in fd: EPOLLIN/EPOLLOUT bits. Only touches epoll when they change. */
bool loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *ud);
/* The owner no longer wants events, but the fd stays registered until it is
 * closed or reports an event: re-arming a kept-alive socket costs nothing. */
void loop_unwatch(struct loop *l, int fd);
/* The fd was closed (epoll dropped it already). */
void loop_forget(struct loop *l, int fd);

void timer_start(struct loop *l, struct timer *t, uint64_t due_ns);
void timer_stop(struct loop *l, struct timer *t);
static inline bool timer_armed(const struct timer *t) { return t->heap_idx != 0; }

/* A buffer of at least len bytes for what a callback reads and is done
 * with before it returns: one per loop (thread), not one per socket. */
char *loop_scratch(struct loop *l, size_t len);

/* Per-thread state a module keeps with the thread's loop, one slot each,
 * freed with the loop by the function given. */
enum loop_slot { LOOP_SLOT_DNS, LOOP_SLOTS };
void *loop_slot_get(struct loop *l, enum loop_slot s);
void loop_slot_set(struct loop *l, enum loop_slot s, void *p, void (*free_fn)(void *));

/* Time read at the last wake-up: cheap, good to ~a syscall. */
uint64_t loop_now(const struct loop *l);
uint64_t loop_refresh_now(struct loop *l);
/* A test's clock instead of CLOCK_MONOTONIC (now NULL: back to it). The loop
 * still waits in epoll: with a clock of its own, a test runs it with
 * max_wait_ns 0 and moves its time to loop_next_due itself. */
void loop_set_clock(struct loop *l, uint64_t (*now)(void *ud), void *ud);
/* When the earliest armed timer is due; UINT64_MAX when none is. */
uint64_t loop_next_due(const struct loop *l);

/* Waits for events or timers (at most max_wait_ns) and dispatches them. */
void loop_run_once(struct loop *l, uint64_t max_wait_ns);
/* Runs until *done becomes true. */
void loop_run_until(struct loop *l, const bool *done);

/* An eventfd other threads may write to wake this loop (wake_fn runs on it). */
int loop_wake_fd(struct loop *l);
void loop_on_wake(struct loop *l, void (*fn)(void *ud), void *ud);
void loop_wake(int wake_fd);

#endif
