/* Watching a load on the run API: progress, aborting thresholds, Ctrl-C. */
#include "load.h"
#include "clock.h"
#include "live.h"
#include "metrics.h"
#include "report.h"
#include "split.h"
#include "xmalloc.h"

#include <poll.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

char **load_env(char *const *extra, int nextra)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = xcalloc(n + (size_t)nextra + 1, sizeof *env);
    memcpy(env, environ, n * sizeof *env);
    memcpy(env + n, extra, (size_t)nextra * sizeof *env);
    return env;
}

/* What the progress line counts towards: seconds, or iterations when every
 * scenario is bounded by iterations. */
static void plan_progress(const struct load_watch *w, struct progress *pr)
{
    const struct options *o = w->opt;
    *pr = (struct progress){.out = w->quiet ? NULL : stderr, .tty = isatty(2), .every = w->progress_every};
    if (!pr->tty && pr->every <= 0)
        pr->out = NULL;
    struct share sh = split_thread(o, 1, 0);
    for (int i = 0; i < o->nscen; i++) {
        const struct scen *sc = &o->scen[i];
        if (sc->executor == EXEC_PER_VU_ITERATIONS)
            pr->iterations_total += (uint64_t)(sc->iterations * split_segment(sc->vus, &sh));
        else if (sc->executor == EXEC_SHARED_ITERATIONS) {
            long long before;
            pr->iterations_total += (uint64_t)split_pool(sc->iterations, sc->vus, &sh, &before);
        }
        else if (sc->start_time + sc->duration > pr->total)
            pr->total = sc->start_time + sc->duration;
    }
}

/* abort_on_fail: evaluate the aborting thresholds on the threads' latest copies. */
static void check_abort(struct load_watch *w, struct runner *r, double elapsed)
{
    struct metrics *m = runner_snapshot(r);
    if (m && report_abort_check(w->L, w->scenario_ref, m, elapsed, w->aborted, sizeof w->aborted)) {
        fprintf(stderr, "\ntide: threshold %s failed: aborting the run\n", w->aborted);
        runner_stop(r, 2);
    }
    metrics_free(m);
}

/* tide worker: the load so far, one JSON line, for the coordinator's progress line. */
static void stream_figures(const struct points *pts, double elapsed)
{
    const struct second *last = pts->nsecs ? &pts->secs[pts->nsecs - 1] : NULL;
    fprintf(stderr, "{\"tide_worker\":1,\"elapsed\":%.1f,\"requests\":%llu,\"failures\":%llu,"
                    "\"iterations\":%llu,\"vus\":%llu}\n", elapsed, (unsigned long long)pts->reqs,
            (unsigned long long)pts->failed, (unsigned long long)pts->iterations,
            (unsigned long long)(last ? last->vus : 0));
    fflush(stderr);
}

bool load_input_ended(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    char buf[256];
    return read(0, buf, sizeof buf) <= 0;
}

/* The job's own reasons to stop, beside Ctrl-C: its coordinator gone (1),
 * the invocation's deadline near (1), then at hand (2). Returns the stop
 * level reached so far, never lower than before. */
static int watch_job(const struct load_watch *w, struct runner *r, int level)
{
    const struct job_ctl *job = w->job;
    int want = level;
    if (job->watch_input && level == 0 && load_input_ended()) {
        fprintf(stderr, "tide worker: standard input closed (the coordinator is gone): stopping\n");
        want = 1;
    }
    double now = job->stop_at > 0 ? clock_wall_s() : 0;
    if (job->stop_at > 0 && now >= job->stop_at && want < 1) {
        fprintf(stderr, "tide lambda: stopping the load ahead of the invocation's deadline; running "
                        "iterations are cut in %.1fs\n", job->cut_at > now ? job->cut_at - now : 0.0);
        want = 1;
    }
    if (job->cut_at > 0 && now >= job->cut_at && want < 2) {
        fprintf(stderr, "tide lambda: the invocation's deadline is at hand: cutting running iterations\n");
        want = 2;
    }
    if (want > level)
        runner_stop(r, want);
    return want;
}

void load_watch(struct load_watch *w, struct runner *r, bool snapshots)
{
    double next_abort_check = 1, next_stream = 1;
    int seen = 0, job_level = 0;
    bool stream = w->job && w->job->stream;
    struct progress pr;
    plan_progress(w, &pr);
    while (!runner_wait(r, 20)) {
        double elapsed = runner_elapsed(r);
        progress_show(&pr, runner_points(r), elapsed, false);
        if (stream && elapsed >= next_stream) {
            next_stream = elapsed + 1;
            stream_figures(runner_points(r), elapsed);
        }
        if (w->job)
            job_level = watch_job(w, r, job_level);
        if (snapshots && !w->aborted[0] && elapsed >= next_abort_check) {
            next_abort_check = elapsed + 1;
            check_abort(w, r, elapsed);
        }
        int now = w->sig->interrupts() - w->presses_before;
        if (now == seen)
            continue;
        seen = now;
        if (seen == 1)
            fprintf(stderr, "\ntide: stopping: running iterations get their graceful_stop "
                            "(%gs) to finish (Ctrl-C again to stop now)\n", w->opt->scen[0].graceful_stop);
        runner_stop(r, seen >= 2 ? 2 : 1);
    }
    progress_show(&pr, runner_points(r), 0, true);
    if (stream)
        stream_figures(runner_points(r), runner_elapsed(r));
    /* a worker left by its coordinator, or cut by its deadline, stopped as on Ctrl-C */
    w->interrupted = seen ? seen : job_level > 0;
}

void load_run_id(char *id, size_t len)
{
    const char *gh = getenv("GITHUB_RUN_ID");
    if (id[0])
        return;
    if (gh && *gh && strlen(gh) < len) {
        snprintf(id, len, "%s", gh);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    unsigned tail = (unsigned)(ts.tv_nsec ^ ((unsigned)getpid() << 16)) & 0xffffff;
    snprintf(id, len, "%s-%06x", stamp, tail);
}

bool load_check_fds(const struct options *o, char *err, size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return true;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long long vus = split_segment_vus(o); /* this process's users: its segment's */
    unsigned long long need = (unsigned long long)vus + 64 + 8ull * o->threads;
    if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
        snprintf(err, errlen, "%lld VUs need about %llu file descriptors, but the limit is %llu "
                              "(raise it with ulimit -n, or run fewer VUs)",
                 vus, need, (unsigned long long)rl.rlim_cur);
        return false;
    }
    return true;
}
