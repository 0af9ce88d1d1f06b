#ifndef TIDE_EXEC_H
#define TIDE_EXEC_H
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "loop.h"
#include "options.h"
#include "split.h"

struct vu;

/* What an executor is handed by whoever runs it: plain values and callbacks. */
struct exec_env {
    struct tctx *ctx;
    const struct scen *scen;
    /* the scenario's next iteration, all threads: shared-iterations' pool, and
     * vu.iteration_global for the VU executors */
    _Atomic uint64_t *shared_next;
    struct share share;             /* this thread's part of the scenario (segment, thread) */
    unsigned first_id, cap;         /* its users' first id, how many it may use */
    unsigned scen_first_id;         /* the first id of the scenario's users in any segment */
    int fn_ref, data_ref;           /* registry refs: module[scen->exec], setup's data */
    void *ud;
    void (*done)(void *ud);         /* the executor has no more work */
    /* an iteration of user `id` failed with this traceback */
    void (*failed)(void *ud, unsigned id, uint64_t iteration, const char *traceback);
    /* a registry ref to a new `vu` table for user `id` */
    int (*vu_table)(void *ud, unsigned id, const char *scenario);
};

/* One scenario's executor on one engine thread: its share of the users and
 * of the schedule (iterations, VU stages or arrival rate). */
struct exec {
    struct exec_env env;
    struct tctx *ctx;
    const struct scen *scen;
    struct share share;         /* this thread's part of the scenario */
    unsigned k_step;            /* arrival executors: global arrivals next_k, +k_step, ... are this thread's */
    /* shared-iterations: the segment's pool (shared_next counts 0..pool-1 in
     * this process); vu.iteration_global of the VU executors' k-th start in
     * this process: iter_base + k * iter_step + 1, unique across segments */
    uint64_t pool, iter_base, iter_step;
    int tagset;                 /* the scenario's tags in this thread's registry */
    struct vu *vus;
    unsigned cap;               /* VUs this thread may use */
    unsigned made;              /* VUs handed out so far (arrival executors grow lazily) */
    unsigned running;           /* VUs inside an iteration */
    unsigned target;            /* ramping-vus: slots that should be running */
    unsigned looping;           /* constant-vus: users that loop (set_vus), at most cap */
    unsigned first_id;
    bool started, stopping, done, launching;
    uint64_t start_ns, end_ns, next_k;
    struct timer start_timer, end_timer, grace_timer, tick_timer;
    struct vu *idle;
};

bool exec_init(struct exec *ex, const struct exec_env *env);
void exec_free(struct exec *ex);
/* Arms the start at run_start + start_time. */
void exec_arm(struct exec *ex, uint64_t run_start_ns);
/* level 1: no new iterations, running ones get graceful_stop; 2: cut now. */
void exec_stop(struct exec *ex, int level);
/* constant-vus: loop with this many of its users from now (at most cap);
 * those past it leave after their current iteration. */
void exec_set_vus(struct exec *ex, unsigned vus);


#endif
