#include "exec.h"
#include "split.h"
#include "clock.h"
#include "metrics.h"
#include "vu.h"
#include "xmalloc.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAMP_TICK_NS (10 * NS_PER_MS)
/* Iterations an arrival-rate executor starts per timer round at most, so
 * that however far behind its schedule it is, the loop still serves the
 * sockets, the end of the run and Ctrl-C. */
#define ARRIVALS_PER_ROUND 1024

#define EXEC_OF(t, field) ((struct exec *)((char *)(t) - offsetof(struct exec, field)))

static uint64_t now_ns(struct exec *ex)
{
    return loop_refresh_now(ex->ctx->loop);
}

static bool closed_model(const struct exec *ex)
{
    enum executor k = ex->scen->executor;
    return k == EXEC_SHARED_ITERATIONS || k == EXEC_PER_VU_ITERATIONS || k == EXEC_CONSTANT_VUS;
}

static void count(struct exec *ex, int metric, double v)
{
    metrics_add(ex->ctx->metrics, metric, ex->tagset, v);
}

static void finish_if_done(struct exec *ex)
{
    if (ex->done || ex->launching || !ex->started || ex->running > 0)
        return;
    if (!ex->stopping && !closed_model(ex))
        return;
    if (!ex->stopping && ex->scen->executor == EXEC_CONSTANT_VUS)
        return; /* no user looping now (set_vus 0) is not the end: the duration is */
    ex->done = true;
    timer_stop(ex->ctx->loop, &ex->end_timer);
    timer_stop(ex->ctx->loop, &ex->grace_timer);
    timer_stop(ex->ctx->loop, &ex->tick_timer);
    ex->env.done(ex->env.ud);
}

static void cut_running(struct exec *ex)
{
    for (unsigned i = 0; i < ex->made; i++)
        vu_cut(&ex->vus[i]);
}

static void on_grace_end(struct timer *t)
{
    cut_running(EXEC_OF(t, grace_timer));
}

static bool open_model(const struct exec *ex)
{
    enum executor k = ex->scen->executor;
    return k == EXEC_CONSTANT_ARRIVAL_RATE || k == EXEC_RAMPING_ARRIVAL_RATE;
}

static void drop_due(struct exec *ex, uint64_t now);

static void begin_stop(struct exec *ex)
{
    if (ex->stopping)
        return;
    /* arrivals due by now that no user started are dropped: so dropped +
     * started is what the schedule had up to here (all of it at the end) */
    if (ex->started && open_model(ex))
        drop_due(ex, now_ns(ex));
    ex->stopping = true;
    ex->started = true; /* a scenario stopped before its start_time is simply over */
    timer_stop(ex->ctx->loop, &ex->start_timer);
    timer_stop(ex->ctx->loop, &ex->tick_timer);
    timer_stop(ex->ctx->loop, &ex->end_timer);
    if (ex->running)
        timer_start(ex->ctx->loop, &ex->grace_timer, now_ns(ex) + seconds_to_ns(ex->scen->graceful_stop));
    finish_if_done(ex);
}

static void on_end(struct timer *t)
{
    begin_stop(EXEC_OF(t, end_timer));
}

void exec_stop(struct exec *ex, int level)
{
    begin_stop(ex);
    if (level >= 2)
        cut_running(ex);
}

/* ---------------- launching users ---------------- */

static void launch(struct exec *ex, struct vu *vu, uint64_t sched)
{
    if (!closed_model(ex) && ex->scen->executor != EXEC_RAMPING_VUS) {
        uint64_t now = now_ns(ex); /* how late the schedule started it: the open model's own health */
        count(ex, M_ITERATION_START_DELAY, now > sched ? (double)(now - sched) / 1e3 : 0);
    }
    ex->running++;
    if (!ex->launching)
        count(ex, M_VUS, ex->running);
    vu_begin(vu, sched);
}

static struct vu *take_idle(struct exec *ex)
{
    struct vu *vu = ex->idle;
    if (vu)
        ex->idle = vu->next_idle;
    else if (ex->made < ex->cap)
        vu = &ex->vus[ex->made++];
    return vu;
}

/* Whether global arrival k is due by now (false past the schedule's end). */
static bool arrival_due(const struct exec *ex, uint64_t k, uint64_t now)
{
    double off = arrival_offset(ex->scen, k);
    return off >= 0 && ex->start_ns + seconds_to_ns(off) <= now;
}

/* How many global arrivals are due by now: the first k that is not. The
 * integral of the rate gives it to within a step or two, which the schedule
 * itself then settles, so it agrees with arrival_offset exactly. */
static uint64_t arrivals_due(const struct exec *ex, uint64_t now)
{
    if (now < ex->start_ns)
        return 0;
    double n = arrivals_by(ex->scen, (double)(now - ex->start_ns) / 1e9);
    uint64_t k = n > 0 ? (uint64_t)n : 0;
    while (k > 0 && !arrival_due(ex, k - 1, now))
        k--;
    while (arrival_due(ex, k, now))
        k++;
    return k;
}

/* Every arrival of this thread's share that is due by now and not started
 * is dropped, all at once: at a rate beyond what the users (or the process)
 * can take, counting them one by one would be the bottleneck. */
static void drop_due(struct exec *ex, uint64_t now)
{
    uint64_t due = arrivals_due(ex, now);
    if (due <= ex->next_k)
        return;
    uint64_t n = (due - ex->next_k + ex->k_step - 1) / ex->k_step;
    ex->next_k += n * ex->k_step;
    count(ex, M_DROPPED_ITERATIONS, (double)n);
    ex->ctx->live.dropped += n;
}

static void on_arrival(struct timer *t)
{
    struct exec *ex = EXEC_OF(t, tick_timer);
    uint64_t now = now_ns(ex);
    for (unsigned n = 0; n < ARRIVALS_PER_ROUND; n++) {
        double off = arrival_offset(ex->scen, ex->next_k);
        if (off < 0)
            return; /* the end timer stops the scenario */
        uint64_t due = ex->start_ns + seconds_to_ns(off);
        if (due > now) {
            timer_start(ex->ctx->loop, &ex->tick_timer, due);
            return;
        }
        /* open model: an iteration is due whether or not a user is free for it */
        struct vu *vu = take_idle(ex);
        if (!vu) {
            drop_due(ex, now);
            continue;
        }
        vu->iteration_global = ex->next_k + 1; /* the arrival's number in the schedule */
        ex->next_k += ex->k_step;
        launch(ex, vu, due);
        if (ex->stopping)
            return;
    }
    /* more are due: the rest in the next round, after the sockets and the end timer */
    timer_start(ex->ctx->loop, &ex->tick_timer, now);
}

/* The VU executors number their iterations in the order they start, on
 * whichever thread: one atomic add each, as shared-iterations' pool. A
 * segment numbers its own starts, interleaved with the other segments'. */
static uint64_t next_global(struct exec *ex)
{
    uint64_t k = ex->env.shared_next ? atomic_fetch_add_explicit(ex->env.shared_next, 1, memory_order_relaxed) : 0;
    return ex->iter_base + k * ex->iter_step;
}

static void on_cut(struct timer *t)
{
    vu_cut((struct vu *)((char *)t - offsetof(struct vu, cut_timer)));
}

static void retire(struct exec *ex, struct vu *vu)
{
    vu->retiring = true;
    vu->cut_timer.fire = on_cut;
    timer_start(ex->ctx->loop, &vu->cut_timer, now_ns(ex) + seconds_to_ns(ex->scen->graceful_ramp_down));
}

/* ramping-vus: start or retire users so the count follows the stages. */
static void on_ramp(struct timer *t)
{
    struct exec *ex = EXEC_OF(t, tick_timer);
    uint64_t now = now_ns(ex);
    unsigned global = ramp_target(ex->scen, (double)(now - ex->start_ns) / 1e9);
    unsigned want = split_part(global, &ex->share);
    unsigned old = ex->target;
    ex->target = want < ex->cap ? want : ex->cap;
    ex->launching = true;
    for (unsigned i = old < ex->target ? old : ex->target; i < (old > ex->target ? old : ex->target); i++) {
        struct vu *vu = &ex->vus[i];
        if (i < ex->target && vu->running && vu->retiring) {
            vu->retiring = false;
            timer_stop(ex->ctx->loop, &vu->cut_timer);
        } else if (i < ex->target && !vu->running) {
            vu->iteration_global = next_global(ex) + 1;
            launch(ex, vu, now);
        } else if (i >= ex->target && vu->running && !vu->retiring) {
            retire(ex, vu);
        }
    }
    ex->launching = false;
    count(ex, M_VUS, ex->running);
    if (ex->made < ex->target)
        ex->made = ex->target;
    if (now < ex->end_ns)
        timer_start(ex->ctx->loop, &ex->tick_timer, now + RAMP_TICK_NS);
    finish_if_done(ex);
}

static bool more(struct exec *ex, struct vu *vu, uint64_t now);

/* Closed model: every user starts at once, each first iteration asked for
 * like the later ones (shared-iterations takes from the common pool). */
static void start_all(struct exec *ex)
{
    ex->launching = true;
    ex->made = ex->cap;
    /* all of them are active from the start */
    count(ex, M_VUS, ex->scen->executor == EXEC_CONSTANT_VUS ? ex->looping : ex->cap);
    for (unsigned i = 0; i < ex->cap && !ex->stopping; i++)
        if (more(ex, &ex->vus[i], ex->start_ns))
            launch(ex, &ex->vus[i], ex->start_ns);
    ex->launching = false;
}

void exec_set_vus(struct exec *ex, unsigned vus)
{
    if (vus > ex->cap)
        vus = ex->cap;
    if (ex->scen->executor != EXEC_CONSTANT_VUS || vus == ex->looping)
        return;
    ex->looping = vus;
    if (!ex->started || ex->stopping)
        return; /* start_all takes the new count; a stopping load keeps stopping */
    uint64_t now = now_ns(ex);
    ex->launching = true;
    for (unsigned i = 0; i < ex->looping; i++)
        if (!ex->vus[i].running && !timer_armed(&ex->vus[i].timer) && more(ex, &ex->vus[i], now))
            launch(ex, &ex->vus[i], now);
    ex->launching = false;
    count(ex, M_VUS, ex->running); /* those past the count leave after their iteration */
}

static void on_start(struct timer *t)
{
    struct exec *ex = EXEC_OF(t, start_timer);
    ex->started = true;
    count(ex, M_VUS_MAX, ex->cap);
    ex->end_ns = ex->start_ns + seconds_to_ns(ex->scen->duration);
    ex->end_timer.fire = on_end;
    timer_start(ex->ctx->loop, &ex->end_timer, ex->end_ns);
    switch (ex->scen->executor) {
    case EXEC_RAMPING_VUS:
        ex->tick_timer.fire = on_ramp;
        on_ramp(&ex->tick_timer);
        break;
    case EXEC_CONSTANT_ARRIVAL_RATE:
    case EXEC_RAMPING_ARRIVAL_RATE:
        ex->tick_timer.fire = on_arrival;
        on_arrival(&ex->tick_timer);
        break;
    default:
        start_all(ex);
    }
    finish_if_done(ex);
}

void exec_arm(struct exec *ex, uint64_t run_start_ns)
{
    ex->start_ns = run_start_ns + seconds_to_ns(ex->scen->start_time);
    ex->start_timer.fire = on_start;
    ex->grace_timer.fire = on_grace_end;
    timer_start(ex->ctx->loop, &ex->start_timer, ex->start_ns);
}

/* ---------------- what VUs ask ---------------- */

static void park(struct exec *ex, struct vu *vu)
{
    ex->running--;
    count(ex, M_VUS, ex->running);
    if (vu->retiring) {
        vu->retiring = false;
        timer_stop(ex->ctx->loop, &vu->cut_timer);
    }
    if (!closed_model(ex) && ex->scen->executor != EXEC_RAMPING_VUS) {
        vu->next_idle = ex->idle;
        ex->idle = vu;
    }
    finish_if_done(ex);
}

/* Whether the VU runs another iteration now; when it does, its number in
 * the scenario (vu.iteration_global). */
static bool more(struct exec *ex, struct vu *vu, uint64_t now)
{
    const struct scen *s = ex->scen;
    uint64_t k = 0;
    bool go;
    switch (s->executor) {
    case EXEC_PER_VU_ITERATIONS: /* user u's i-th: (u - 1) * iterations + i, whichever thread runs it */
        go = vu->iteration < (uint64_t)s->iterations;
        k = (uint64_t)(vu->id - ex->env.scen_first_id) * (uint64_t)s->iterations + vu->iteration;
        break;
    case EXEC_SHARED_ITERATIONS: /* the segment's pool, numbered after the segments before it */
        k = atomic_fetch_add_explicit(ex->env.shared_next, 1, memory_order_relaxed);
        go = k < ex->pool;
        k += ex->iter_base;
        break;
    case EXEC_CONSTANT_VUS:
        go = vu->slot < ex->looping && now < ex->end_ns;
        break;
    case EXEC_RAMPING_VUS:
        go = vu->slot < ex->target && now < ex->end_ns;
        break;
    default:
        return false;
    }
    if (go && (s->executor == EXEC_CONSTANT_VUS || s->executor == EXEC_RAMPING_VUS))
        k = next_global(ex);
    if (go)
        vu->iteration_global = k + 1;
    return go;
}

static bool on_next(struct vu *vu, uint64_t *sched_ns)
{
    struct exec *ex = vu->owner;
    uint64_t now = loop_now(ex->ctx->loop);
    if (!ex->stopping && !vu->retiring && more(ex, vu, now)) {
        *sched_ns = now;
        return true;
    }
    park(ex, vu);
    return false;
}

static void on_iteration_done(struct vu *vu, bool ok, uint64_t end_ns)
{
    struct exec *ex = vu->owner;
    count(ex, M_ITERATIONS, 1);
    ex->ctx->live.iterations++;
    ex->ctx->live.errors += !ok;
    count(ex, M_ITERATION_DURATION, end_ns > vu->sched_ns ? (double)(end_ns - vu->sched_ns) / 1e3 : 0);
    if (!ok)
        count(ex, M_ITERATION_ERRORS, 1);
}

static void on_iteration_cut(struct vu *vu)
{
    struct exec *ex = vu->owner;
    count(ex, M_ITERATIONS_INTERRUPTED, 1);
    park(ex, vu);
}

static void on_failed(struct vu *vu, const char *traceback)
{
    struct exec *ex = vu->owner;
    ex->env.failed(ex->env.ud, vu->id, vu->iteration, traceback);
}

static int on_vu_table(struct vu *vu)
{
    struct exec *ex = vu->owner;
    return ex->env.vu_table(ex->env.ud, vu->id, ex->scen->name);
}

static const struct vu_host exec_host = {
    .next = on_next,
    .done = on_iteration_done,
    .cut = on_iteration_cut,
    .failed = on_failed,
    .table = on_vu_table,
};

/* ---------------- set-up ---------------- */

bool exec_init(struct exec *ex, const struct exec_env *env)
{
    memset(ex, 0, sizeof *ex);
    ex->env = *env;
    ex->ctx = env->ctx;
    ex->scen = env->scen;
    ex->share = env->share;
    ex->k_step = split_arrival_stride(&env->share);
    ex->next_k = split_arrival_offset(&env->share);
    bool shared = ex->scen->executor == EXEC_SHARED_ITERATIONS;
    unsigned segs = env->share.segs ? env->share.segs : 1;
    long long before = 0;
    ex->pool = (uint64_t)split_pool(ex->scen->iterations, ex->scen->vus, &env->share, &before);
    ex->iter_base = shared ? (uint64_t)before : env->share.seg;
    ex->iter_step = shared ? 1 : segs;
    ex->cap = env->cap;
    ex->looping = env->cap;
    ex->tagset = metrics_tagset(ex->ctx->metrics, ex->scen->tags, ex->scen->tags_len);
    ex->vus = ex->cap ? xcalloc(ex->cap, sizeof *ex->vus) : NULL;
    unsigned nshards = ex->ctx->nshards ? ex->ctx->nshards : 1;
    unsigned per_shard = (ex->cap + nshards - 1) / nshards;
    for (unsigned i = 0; i < ex->cap; i++) {
        struct vu *vu = &ex->vus[i];
        vu->host = &exec_host;
        vu->owner = ex;
        vu->ctx = ex->ctx;
        vu->fn_ref = env->fn_ref;
        vu->data_ref = env->data_ref;
        vu->tags = ex->scen->tags;
        vu->tags_len = ex->scen->tags_len;
        vu->id = env->first_id + i;
        vu->slot = i;
        vu->shard = ex->ctx->shards[per_shard ? (i / per_shard) % ex->ctx->nshards : 0];
    }
    return true;
}

void exec_free(struct exec *ex)
{
    free(ex->vus);
    ex->vus = NULL;
}
