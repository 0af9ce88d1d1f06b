#ifndef TIDE_ENGINE_H
#define TIDE_ENGINE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "options.h"

struct vu;

/* What every engine thread shares: read-only after start, plus atomics. */
struct run {
    const struct options *opt;
    const char *scenario_path;
    const char *setup_json;     /* setup()'s result as JSON, NULL for none */
    size_t setup_json_len;
    char *const *env;           /* "KEY=VALUE" list for ctx.env / vu.env */
    _Atomic int stop_level;     /* 1: finish iterations, 2: cut now */
    _Atomic uint64_t shared_next;
    _Atomic unsigned tracebacks;
    _Atomic unsigned failed_threads;
    uint64_t start_ns;          /* written before the second barrier */
    pthread_barrier_t barrier;
};

/* One engine thread: its Lua state, loop, shards and a block of VUs. */
struct engine {
    struct run *run;
    unsigned index, first_vu, nvus;
    pthread_t tid;
    struct tctx ctx;
    struct vu *vus;
    int run_ref, data_ref;
    unsigned live;
    bool stopping, started;
    struct timer end_timer, grace_timer;
    char error[2048];
    _Atomic bool done;
};

bool engine_spawn(struct engine *e);
/* Asks the thread to re-read run->stop_level (any thread may call it). */
void engine_poke(struct engine *e);
void engine_join(struct engine *e);
void engine_free(struct engine *e);

/* Called by VUs. */
bool engine_take_iteration(struct engine *e, struct vu *vu);
void engine_iteration_done(struct engine *e, struct vu *vu, bool ok, uint64_t end_ns);
void engine_vu_finished(struct engine *e, struct vu *vu, bool interrupted);
void engine_report_error(struct engine *e, struct vu *vu, const char *traceback);

#endif
