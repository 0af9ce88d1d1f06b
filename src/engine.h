#ifndef TIDE_ENGINE_H
#define TIDE_ENGINE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "exec.h"
#include "options.h"
#include "scenario.h"
#include "sink.h"

/* Where engine threads wait until all are ready and the start time is set. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready;             /* threads done preparing (well or not) */
    bool open, abort;           /* start (at start_ns), or give up */
};

/* What every engine thread shares: read-only after start, plus atomics. */
struct run {
    const struct options *opt;
    const struct scenario_source *source;
    const char *setup_json;     /* setup()'s result as JSON, NULL for none */
    size_t setup_json_len;
    char *const *env;           /* "KEY=VALUE" list for vu.env */
    unsigned threads;
    _Atomic int stop_level;     /* 1: finish iterations, 2: cut now */
    _Atomic int vus_wanted[MAX_SCENARIOS]; /* constant-vus: users to loop with; -1 as planned */
    _Atomic uint64_t shared_next[MAX_SCENARIOS];
    _Atomic unsigned tracebacks;
    _Atomic unsigned failed_threads;
    uint64_t start_ns;          /* written before the gate opens */
    struct points *points;      /* per-second hand-over to main */
    bool snapshots;             /* thresholds may abort: hand over metrics each second */
    struct once *once;
    struct dreg *data;          /* tide.data: the main thread's, read-only here */
    const struct sink *sink;
    int done_fd;                /* eventfd: each thread adds 1 when it is done */
    struct gate gate;
};

/* One engine thread: its Lua state, loop, shards and its share of every scenario. */
struct engine {
    struct run *run;
    unsigned index;
    pthread_t tid;
    struct tctx ctx;
    struct exec execs[MAX_SCENARIOS];
    unsigned nexecs, execs_done;
    int data_ref, env_ref;
    int scen_env_ref[MAX_SCENARIOS]; /* vu.env per scenario: --env with its own env over it */
    unsigned sec;               /* seconds handed over */
    struct timer tick;
    bool started;
    char error[2048];
    _Atomic bool done;
};

bool engine_spawn(struct engine *e);
/* Main side: waits until `spawned` threads are ready; false if one failed. */
bool gate_wait_ready(struct gate *g, unsigned spawned);
/* Main side: lets the threads run (start_ns set), or give up. */
void gate_open(struct gate *g, bool abort);
/* Asks the thread to re-read run->stop_level and vus_wanted (any thread may call it). */
void engine_poke(struct engine *e);
void engine_join(struct engine *e);
void engine_free(struct engine *e);

#endif
