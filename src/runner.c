/* The run API: engine threads started behind a gate, watched through an
 * eventfd and the per-second hand-over, changed through atomics and a poke. */
#include "runner.h"
#include "clock.h"
#include "engine.h"
#include "metrics.h"
#include "xmalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct runner {
    struct run run;             /* what the threads share */
    struct engine *eng;
    unsigned spawned;
    struct points points;
    double started;             /* wall clock */
    bool over;
    bool spawned_joined;        /* runner_finish joined the threads */
};

static void say_first_failure(struct runner *r, char *err, size_t errlen)
{
    for (unsigned i = 0; i < r->spawned; i++)
        if (r->eng[i].error[0]) {
            snprintf(err, errlen, "engine thread %u: %s", i, r->eng[i].error);
            return;
        }
    snprintf(err, errlen, "cannot start engine thread %u", r->spawned);
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    if (!r->spawned_joined && r->spawned) { /* not finished: cut the load short first */
        runner_stop(r, 2);
        for (unsigned i = 0; i < r->spawned; i++)
            engine_join(&r->eng[i]);
    }
    for (unsigned i = 0; i < r->spawned; i++)
        engine_free(&r->eng[i]);
    if (r->run.done_fd >= 0)
        close(r->run.done_fd);
    pthread_mutex_destroy(&r->run.gate.lock);
    pthread_cond_destroy(&r->run.gate.cond);
    if (r->points.total)
        points_free(&r->points);
    free(r->eng);
    free(r);
}

static struct runner *runner_new(const struct run_plan *plan, const struct sink *sink)
{
    struct runner *r = xcalloc(1, sizeof *r);
    unsigned n = plan->opt->threads;
    r->run = (struct run){.opt = plan->opt, .source = plan->source, .setup_json = plan->setup_json,
                          .setup_json_len = plan->setup_json_len, .env = plan->env, .threads = n,
                          .points = &r->points, .snapshots = plan->snapshots, .once = plan->once, .data = plan->data,
                          .sink = sink, .done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    for (int i = 0; i < MAX_SCENARIOS; i++)
        atomic_init(&r->run.vus_wanted[i], -1);
    pthread_mutex_init(&r->run.gate.lock, NULL);
    pthread_cond_init(&r->run.gate.cond, NULL);
    r->eng = xcalloc(n, sizeof *r->eng);
    if (r->run.done_fd < 0 || !points_init(&r->points, n)) {
        runner_free(r);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        r->eng[i].run = &r->run;
        r->eng[i].index = i;
    }
    return r;
}

/* Until the wall clock reaches start_at, in steps short enough to see a
 * cancel soon; false when cancelled. */
static bool wait_for_start(const struct run_plan *plan)
{
    const double step = 0.05;
    for (;;) {
        if (plan->cancelled && plan->cancelled(plan->cancel_ud))
            return false;
        double left = plan->start_at - clock_wall_s();
        if (left <= 0)
            return true;
        double until = left > step ? clock_wall_s() + step : plan->start_at;
        struct timespec ts = {.tv_sec = (time_t)until, .tv_nsec = (long)((until - (double)(time_t)until) * 1e9)};
        clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
    }
}

struct runner *runner_start(const struct run_plan *plan, const struct sink *sink, char *err, size_t errlen)
{
    struct runner *r = runner_new(plan, sink);
    if (!r) { /* tide's memory is xmalloc's: only the eventfd can be missing */
        snprintf(err, errlen, "cannot make the run's eventfd: %s", strerror(errno));
        return NULL;
    }
    while (r->spawned < plan->opt->threads && engine_spawn(&r->eng[r->spawned]))
        r->spawned++;
    gate_wait_ready(&r->run.gate, r->spawned);
    bool failed = r->spawned < plan->opt->threads || atomic_load(&r->run.failed_threads) > 0;
    bool cancelled = !failed && plan->start_at > 0 && !wait_for_start(plan);
    if (cancelled) {
        failed = true;
        snprintf(err, errlen, "cancelled while waiting for the start time");
    }
    r->started = clock_wall_s();
    r->run.start_ns = clock_now_ns();
    gate_open(&r->run.gate, failed);
    if (!failed)
        return r;
    if (!cancelled)
        say_first_failure(r, err, errlen);
    for (unsigned i = 0; i < r->spawned; i++)
        engine_join(&r->eng[i]);
    r->spawned_joined = true;
    runner_free(r);
    return NULL;
}

static bool all_done(const struct runner *r)
{
    for (unsigned i = 0; i < r->spawned; i++)
        if (!atomic_load(&r->eng[i].done))
            return false;
    return true;
}

bool runner_wait(struct runner *r, int timeout_ms)
{
    if (!r->over) {
        struct pollfd p = {.fd = r->run.done_fd, .events = POLLIN};
        uint64_t n;
        if (!all_done(r) && poll(&p, 1, timeout_ms) > 0 && read(r->run.done_fd, &n, sizeof n) < 0) {
            /* nothing to read after all: all_done below decides */
        }
        r->over = all_done(r);
    }
    points_collect(&r->points);
    return r->over;
}

const struct points *runner_points(struct runner *r)
{
    return &r->points;
}

double runner_elapsed(const struct runner *r)
{
    return (double)(clock_now_ns() - r->run.start_ns) / 1e9;
}

struct metrics *runner_snapshot(struct runner *r)
{
    return points_merged_snapshots(&r->points);
}

static void poke_all(struct runner *r)
{
    for (unsigned i = 0; i < r->spawned; i++)
        engine_poke(&r->eng[i]);
}

void runner_stop(struct runner *r, int level)
{
    if (level > atomic_load(&r->run.stop_level))
        atomic_store(&r->run.stop_level, level > 2 ? 2 : level);
    poke_all(r);
}

bool runner_set_vus(struct runner *r, const char *scenario, long long vus, char *err, size_t errlen)
{
    const struct options *o = r->run.opt;
    for (int i = 0; i < o->nscen; i++) {
        const struct scen *sc = &o->scen[i];
        if (strcmp(sc->name, scenario) != 0)
            continue;
        if (sc->executor != EXEC_CONSTANT_VUS) {
            snprintf(err, errlen, "scenario '%s' is not a constant-vus load", scenario);
            return false;
        }
        if (vus < 0 || vus > sc->vus) {
            snprintf(err, errlen, "scenario '%s': vus must be 0..%lld (what it planned), got %lld",
                     scenario, sc->vus, vus);
            return false;
        }
        atomic_store(&r->run.vus_wanted[i], (int)vus);
        poke_all(r);
        return true;
    }
    snprintf(err, errlen, "no scenario '%s' in this run", scenario);
    return false;
}

bool runner_finish(struct runner *r, struct metrics *into, struct run_result *res)
{
    for (unsigned i = 0; i < r->spawned; i++)
        engine_join(&r->eng[i]);
    res->elapsed = runner_elapsed(r);
    res->started = r->started;
    res->finished = clock_wall_s();
    points_collect(&r->points);
    bool ok = true;
    for (unsigned i = 0; i < r->spawned; i++)
        if (r->eng[i].started && !metrics_merge(into, r->eng[i].ctx.metrics))
            ok = false;
    r->spawned_joined = true;
    return ok;
}
