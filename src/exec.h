#ifndef TIDE_EXEC_H
#define TIDE_EXEC_H
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "loop.h"
#include "options.h"

struct engine;
struct vu;

/* One scenario's executor on one engine thread: its share of the users and
 * of the schedule (iterations, VU stages or arrival rate). */
struct exec {
    struct engine *eng;
    struct tctx *ctx;
    const struct scen *scen;
    unsigned scen_index;
    unsigned share_i, share_n;  /* this thread's part of the scenario */
    int fn_ref;                 /* module[scen->exec] */
    int tagset;                 /* the scenario's tags in this thread's registry */
    struct vu *vus;
    unsigned cap;               /* VUs this thread may use */
    unsigned made;              /* VUs handed out so far (arrival executors grow lazily) */
    unsigned running;           /* VUs inside an iteration */
    unsigned target;            /* ramping-vus: slots that should be running */
    unsigned first_id;
    bool started, stopping, done, launching;
    uint64_t start_ns, end_ns, next_k;
    struct timer start_timer, end_timer, grace_timer, tick_timer;
    struct vu *idle;
};

bool exec_init(struct exec *ex, struct engine *eng, unsigned scen_index, unsigned share_i,
               unsigned share_n, unsigned first_id, unsigned cap);
void exec_free(struct exec *ex);
/* Arms the start at run_start + start_time. */
void exec_arm(struct exec *ex, uint64_t run_start_ns);
/* level 1: no new iterations, running ones get graceful_stop; 2: cut now. */
void exec_stop(struct exec *ex, int level);

/* For VUs. */
bool exec_next(struct exec *ex, struct vu *vu, uint64_t *sched_ns);
void exec_iteration_done(struct exec *ex, struct vu *vu, bool ok, uint64_t end_ns);
void exec_iteration_cut(struct exec *ex, struct vu *vu);
void exec_report_error(struct exec *ex, struct vu *vu, const char *traceback);
int exec_vu_table(struct exec *ex, struct vu *vu);
int exec_fn_ref(const struct exec *ex);
int exec_data_ref(const struct exec *ex);

/* The integral of the arrival rate over the first t seconds of the
 * scenario (t past its end counts up to the end). */
double arrivals_by(const struct scen *s, double t);
/* Seconds from the scenario's start to global arrival k, or < 0 past the end. */
double arrival_offset(const struct scen *s, uint64_t k);
/* Users a ramping-vus scenario should run t seconds after its start. */
unsigned ramp_target(const struct scen *s, double t);

#endif
