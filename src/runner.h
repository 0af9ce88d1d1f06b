#ifndef TIDE_RUNNER_H
#define TIDE_RUNNER_H
#include <stdbool.h>
#include <stddef.h>

#include "live.h"
#include "options.h"
#include "scenario.h"
#include "sink.h"

struct metrics;
struct once;
struct dreg;

/* The run API: a load planned from options and a scenario's source, started
 * on engine threads, watched, changed and stopped while it runs, then
 * finished into merged metrics. No argv, no exit(), no printing: messages go
 * to the sink the caller gives. `tide run` stands on it. */

struct run_plan {
    const struct options *opt;          /* finished (options_finish) */
    const struct scenario_source *source; /* loaded again by every engine thread */
    const char *setup_json;             /* setup()'s data as JSON; NULL for none */
    size_t setup_json_len;
    char *const *env;                   /* "KEY=VALUE" list: vu.env */
    struct once *once;                  /* tide.once across the run */
    struct dreg *data;                  /* tide.data's files, loaded on the main thread; NULL for none */
    bool snapshots;                     /* hand metrics over each second (abort_on_fail) */
    double start_at;                    /* wall clock the load starts at (threads ready before); 0: now */
    bool (*cancelled)(void *ud);        /* asked while waiting for start_at: true gives up */
    void *cancel_ud;
};

struct runner;

/* Starts the engine threads and the load (at plan->start_at, once every
 * thread is ready). NULL with the reason in err when it cannot start (a
 * thread could not load the scenario, out of memory, cancelled while waiting);
 * everything it made is gone then. plan, its options and source, and sink
 * must outlive the runner. */
struct runner *runner_start(const struct run_plan *plan, const struct sink *sink, char *err, size_t errlen);
/* Waits at most timeout_ms for the load to end; true when it has. */
bool runner_wait(struct runner *r, int timeout_ms);
/* The per-second figures so far, merged from the threads. */
const struct points *runner_points(struct runner *r);
/* Seconds since the load started. */
double runner_elapsed(const struct runner *r);
/* The threads' latest metrics, merged (caller frees); NULL before any came. */
struct metrics *runner_snapshot(struct runner *r);
/* 1: no new iterations, running ones get graceful_stop; 2: cut them now. */
void runner_stop(struct runner *r, int level);
/* A constant-vus scenario loops with `vus` of its users from now (at most
 * as many as it planned); false, with the reason in err, otherwise. */
bool runner_set_vus(struct runner *r, const char *scenario, long long vus, char *err, size_t errlen);

struct run_result {
    double started, finished;           /* wall clock, seconds since the epoch */
    double elapsed;                     /* seconds of load */
};
/* Waits for the end and merges every thread's metrics into `into`; false
 * when out of memory. runner_points stays readable until runner_free. */
bool runner_finish(struct runner *r, struct metrics *into, struct run_result *res);
void runner_free(struct runner *r);

#endif
