/* `tide run`: options, setup, the engine threads, teardown, the summary. */
#include "run.h"
#include "clock.h"
#include "coord.h"
#include "luacmd.h"
#include "state.h"
#include "block.h"
#include "engine.h"
#include "guard.h"
#include "live.h"
#include "list.h"
#include "load.h"
#include "metrics.h"
#include "once.h"
#include "redact.h"
#include "options.h"
#include "report.h"
#include "run_args.h"
#include "runner.h"
#include "xmalloc.h"
#include "scenario.h"
#include "split.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct session {
    struct run_args cli;
    struct options opt;
    char path[4096];
    lua_State *L;
    struct tctx ctx;
    const struct signals *sig;
    int mod;                    /* stack index of the scenario module */
    int mod_ref;                /* the same, as a registry ref (for report.c) */
    int data;                   /* stack index of setup()'s result */
    double elapsed;
    double started, finished;
    int interrupted;
    char aborted[512];          /* the threshold that stopped the run early */
    struct scenario_source source;
    struct sink sink;
    struct runner *runner;
    struct points no_points;    /* the seconds of a load that never started */
    const struct job_ctl *job;  /* run by tide worker or tide lambda; NULL: tide run */
};

static int open_scenario(struct session *s)
{
    char err[4096];
    if (!scenario_resolve(s->cli.scenario, s->path, sizeof s->path)) {
        run_usage_error("no scenario '%s' (looked for a file, scenarios/NAME.lua, "
                    "$TIDE_PATH and the built-in ones)", s->cli.scenario);
        list_suggest(s->cli.scenario);
        return EXIT_USAGE;
    }
    if (!(s->L = tctx_open(&s->ctx, 1))) {
        fprintf(stderr, "tide: out of memory\n");
        return EXIT_SCRIPT;
    }
    s->ctx.interrupts = s->sig->interrupts;
    block_watch_cancel(&s->ctx, s->sig->fd);
    s->ctx.once = once_new();
    int rc = scenario_read(s->path, &s->source, err, sizeof err) ? scenario_run_source(s->L, &s->source, err, sizeof err)
                                                                 : EXIT_SCRIPT;
    if (rc) {
        fprintf(stderr, "tide: %s%s\n", rc == EXIT_SCRIPT ? "scenario failed to load: " : "", err);
        return rc;
    }
    s->mod = lua_gettop(s->L);
    lua_pushvalue(s->L, s->mod);
    s->mod_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
    return 0;
}

static int read_options(struct session *s)
{
    char err[OPTIONS_ERR];
    options_init(&s->opt);
    lua_getfield(s->L, s->mod, "options");
    bool ok = lua_isnil(s->L, -1) || options_from_lua(s->L, -1, &s->opt, err);
    lua_pop(s->L, 1);
    if (!ok)
        return run_usage_error("%s", err);
    int rc = run_args_apply(&s->cli, &s->opt);
    if (rc)
        return rc;
    if (!options_finish(&s->opt, (unsigned)sysconf(_SC_NPROCESSORS_ONLN), err))
        return run_usage_error("%s", err);
    split_fit_threads(&s->opt); /* no more threads than the segment has users */
    int line = s->opt.target[0] ? 0 : scenario_target_line(&s->source);
    if (line) {
        fprintf(stderr, "tide run: %s:%d reads .target, but no target was given: pass --target URL "
                        "(or set options.target in the scenario)\n", s->source.chunkname + 1, line);
        return EXIT_USAGE;
    }
    s->ctx.max_body = s->opt.max_body;
    s->ctx.http = s->opt.http;
    s->ctx.mem_limit = s->opt.lua_memory;
    once_limit_names(s->ctx.once, s->opt.max_names);
    return 0;
}

/* Every scenario's exec must name a function of the module: said before
 * setup runs, not discovered by the engine threads afterwards. */
static int check_exec_functions(struct session *s)
{
    for (int i = 0; i < s->opt.nscen; i++) {
        const struct scen *sc = &s->opt.scen[i];
        int t = lua_getfield(s->L, s->mod, sc->exec);
        lua_pop(s->L, 1);
        if (t == LUA_TFUNCTION)
            continue;
        if (!s->opt.named && strcmp(sc->exec, "run") == 0)
            fprintf(stderr, "tide run: %s: the scenario must return a table with "
                            "run = function(vu, data) ... end (run is %s)\n", s->path, lua_typename(s->L, t));
        else
            fprintf(stderr, "tide run: %s%s%sexec: the scenario has no function '%s' (got %s)\n",
                    s->opt.named ? "options.scenarios." : "options.", s->opt.named ? sc->name : "",
                    s->opt.named ? "." : "", sc->exec, lua_typename(s->L, t));
        return EXIT_USAGE;
    }
    return 0;
}

/* ctx for setup and teardown: target, env, vus, options. */
static void push_ctx(struct session *s, char *const *env)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 4);
    if (s->opt.target[0]) {
        lua_pushstring(L, s->opt.target);
        lua_setfield(L, -2, "target");
    }
    state_push_env(L, env);
    lua_setfield(L, -2, "env");
    lua_pushinteger(L, options_total_vus(&s->opt));
    lua_setfield(L, -2, "vus");
}

/* Calls module[name](ctx, data?) with a traceback; false and a message on error. */
static bool call_hook(struct session *s, const char *name, int ctx_idx, bool with_data, int nres)
{
    lua_State *L = s->L;
    lua_pushcfunction(L, scenario_traceback);
    lua_getfield(L, s->mod, name);
    lua_pushvalue(L, ctx_idx);
    if (with_data)
        lua_pushvalue(L, s->data);
    if (guard_pcall(L, with_data ? 2 : 1, nres, -3 - with_data) == LUA_OK) {
        lua_remove(L, -1 - nres);
        return true;
    }
    char clean[4096];
    redact_password(lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)",
                    s->opt.target, clean, sizeof clean);
    fprintf(stderr, "tide: %s failed: %s\n", name, clean);
    lua_pop(L, 2);
    return false;
}

static int run_setup(struct session *s, int ctx_idx, const char **json, size_t *json_len)
{
    lua_State *L = s->L;
    *json = NULL;
    lua_getfield(L, s->mod, "setup");
    bool has = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has && !call_hook(s, "setup", ctx_idx, false, 1))
        return EXIT_SCRIPT;
    if (!has)
        lua_pushnil(L);
    s->data = lua_gettop(L);
    if (lua_isnil(L, -1))
        return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, s->data);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "tide: setup returned data that cannot be copied to the engine threads "
                        "as JSON: %s\n", lua_tostring(L, -1));
        return EXIT_SCRIPT;
    }
    *json = lua_tolstring(L, -1, json_len); /* stays on the stack for the run */
    return 0;
}

/* Where the run's messages go for `tide run`: stderr, a line each. */
static void to_stderr(void *ud, enum sink_kind kind, const char *text)
{
    (void)ud, (void)kind;
    fprintf(stderr, "tide: %s\n", text);
}

/* Waiting for --start-at: a Ctrl-C gives up the wait (the run is interrupted),
 * as do a worker's coordinator gone and an invocation's deadline near. */
static bool start_cancelled(void *ud)
{
    struct session *s = ud;
    const struct job_ctl *job = s->job;
    return s->sig->interrupts() > s->ctx.interrupts_before ||
           (job && job->watch_input && load_input_ended()) || (job && job->stop_at > 0 && clock_wall_s() >= job->stop_at);
}

/* --start-at: still ahead after setup (or at most START_AT_SLACK behind);
 * one line says how long the wait is. 0 or EXIT_USAGE. */
static int announce_start(struct session *s)
{
    double left = s->cli.start_at - clock_wall_s();
    if (left < -START_AT_SLACK) {
        fprintf(stderr, "tide run: --start-at '%s' passed %.1fs ago, while setup ran; no load started\n",
                s->cli.start_at_text, -left);
        return EXIT_USAGE;
    }
    if (!s->cli.out.quiet)
        fprintf(stderr, "tide: waiting %.1fs, until --start-at %s, to start the load (Ctrl-C stops)\n",
                left > 0 ? left : 0, s->cli.start_at_text);
    return 0;
}

/* The load itself, on the run API: its metrics merged into results. */
static int run_load_phase(struct session *s, const char *json, size_t json_len, char **env,
                          struct metrics *results)
{
    bool snapshots = report_can_abort(s->L, s->mod_ref, s->ctx.metrics);
    struct run_plan plan = {.opt = &s->opt, .source = &s->source, .setup_json = json,
                            .setup_json_len = json_len, .env = env, .once = s->ctx.once, .data = s->ctx.data,
                            .snapshots = snapshots, .start_at = s->cli.start_at, .cancelled = start_cancelled,
                            .cancel_ud = s};
    if (s->cli.start_at > 0) {
        int rc = announce_start(s);
        if (rc)
            return rc;
    }
    s->ctx.interrupts_before = s->sig->interrupts();
    char err[4096];
    s->runner = runner_start(&plan, &s->sink, err, sizeof err);
    if (!s->runner && start_cancelled(s)) {
        s->interrupted = 1; /* Ctrl-C while waiting to start: no load, teardown still runs */
        fprintf(stderr, "tide: interrupted while waiting for --start-at: no load ran\n");
        return 0;
    }
    if (!s->runner) {
        fprintf(stderr, "tide: %s\n", err);
        return EXIT_SCRIPT;
    }
    struct load_watch w = {.L = s->L, .scenario_ref = s->mod_ref, .opt = &s->opt, .sig = s->sig,
                           .quiet = s->cli.out.quiet, .progress_every = s->cli.progress_every,
                           .job = s->job};
    load_watch(&w, s->runner, snapshots);
    s->interrupted = w.interrupted;
    snprintf(s->aborted, sizeof s->aborted, "%s", w.aborted);
    struct run_result res;
    bool ok = runner_finish(s->runner, results, &res);
    s->started = res.started;
    s->finished = res.finished;
    s->elapsed = res.elapsed;
    return ok ? 0 : EXIT_SCRIPT;
}

/* --data FILE: read and decoded (to check it, and for teardown) onto the
 * stack as s->data; *json keeps its text for the engine threads (NULL for
 * JSON null: no data, as a setup that returns nothing). */
static int load_data_file(struct session *s, char **json, size_t *json_len)
{
    lua_State *L = s->L;
    *json = NULL;
    FILE *f = fopen(s->cli.data, "rb");
    if (!f)
        return fprintf(stderr, "tide %s: --data %s: cannot read it: %s\n", s->cli.mode == MODE_RUN ? "run" : "teardown",
                       s->cli.data, strerror(errno)), EXIT_USAGE;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n;
    char chunk[8192];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        luaL_addlstring(&b, chunk, n);
    bool failed = ferror(f);
    fclose(f);
    luaL_pushresult(&b);
    int text = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "decode");
    lua_pushvalue(L, text);
    if (failed || lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "tide %s: --data %s: not the JSON tide setup writes: %s\n",
                s->cli.mode == MODE_RUN ? "run" : "teardown", s->cli.data,
                failed ? "read error" : lua_tostring(L, -1));
        return EXIT_USAGE;
    }
    lua_getfield(L, -2, "null");
    bool null = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    if (null) {
        lua_pop(L, 1);
        lua_pushnil(L);
    } else {
        *json = (char *)lua_tolstring(L, text, json_len); /* the text stays on the stack */
    }
    lua_replace(L, text + 1); /* data where LOADED was; cjson above it */
    lua_settop(L, text + 1);
    s->data = lua_gettop(L);
    return 0;
}

/* tide setup: setup's data as JSON, to --out-data FILE or stdout. */
static int write_setup_data(struct session *s, const char *json, size_t len)
{
    FILE *f = s->cli.out_data ? fopen(s->cli.out_data, "wb") : stdout;
    if (!f)
        return fprintf(stderr, "tide setup: --out-data %s: %s\n", s->cli.out_data, strerror(errno)), EXIT_USAGE;
    fwrite(json ? json : "null", 1, json ? len : 4, f);
    fputc('\n', f);
    bool ok = fflush(f) == 0 && !ferror(f);
    if (f != stdout)
        ok = fclose(f) == 0 && ok;
    if (!ok)
        fprintf(stderr, "tide setup: cannot write the data to %s\n", s->cli.out_data ? s->cli.out_data : "stdout");
    return ok ? 0 : EXIT_SCRIPT;
}

/* tide setup and tide teardown: one hook, no load. */
static int run_hook_only(struct session *s, int ctx_idx)
{
    if (s->cli.mode == MODE_SETUP) {
        const char *json;
        size_t len = 0;
        int rc = run_setup(s, ctx_idx, &json, &len);
        return rc ? rc : write_setup_data(s, json, len);
    }
    lua_getfield(s->L, s->mod, "teardown");
    bool has = !lua_isnil(s->L, -1);
    lua_pop(s->L, 1);
    if (!has)
        fprintf(stderr, "tide teardown: %s has no teardown: nothing to do\n", s->path);
    return !has || call_hook(s, "teardown", ctx_idx, true, 0) ? 0 : EXIT_SCRIPT;
}

/* teardown after the load, unless --data (then it runs once, elsewhere). */
static bool run_teardown(struct session *s, int ctx_idx)
{
    lua_getfield(s->L, s->mod, "teardown");
    bool has_teardown = !lua_isnil(s->L, -1) && !s->cli.data;
    lua_pop(s->L, 1);
    s->ctx.interrupts_before = s->sig->interrupts(); /* only a new Ctrl-C cuts teardown short */
    bool teardown_ok = !has_teardown || call_hook(s, "teardown", ctx_idx, true, 0);
    if (s->sig->interrupts() > s->ctx.interrupts_before && !s->interrupted)
        s->interrupted = s->sig->interrupts(); /* Ctrl-C in teardown: interrupted, not a script failure */
    return teardown_ok;
}

/* Where the workers' documents go: $TIDE_WORKER_DOCS (kept), else a
 * temporary directory (removed). false with the reason printed. */
static bool workers_docs_dir(char *dir, size_t len, bool *keep)
{
    const char *want = getenv("TIDE_WORKER_DOCS");
    *keep = want && *want;
    if (*keep) {
        snprintf(dir, len, "%s", want);
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            return true;
    } else {
        snprintf(dir, len, "/tmp/tide-run-XXXXXX");
        if (mkdtemp(dir))
            return true;
    }
    fprintf(stderr, "tide run: cannot make the directory %s for the workers' results: %s\n", dir, strerror(errno));
    return false;
}

/* tide report over the workers' documents: the merged summary, the
 * thresholds judged on the merged data (--check), --out json/html/pg. */
/* What setup and teardown recorded here (checks, custom metrics), as a
 * registry file `tide report --add-registry` merges beside the workers'
 * documents: a check made in teardown counts as in a run on one machine. */
static bool write_own_registry(struct session *s, const char *path)
{
    lua_State *L = s->L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.results");
    bool ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_getfield(L, -1, "write_registry") == LUA_TFUNCTION;
    if (ok) {
        metrics_push(L, s->ctx.metrics);
        lua_pushstring(L, path);
        lua_rotate(L, -2, 1); /* write_registry(path, metrics) */
        ok = lua_pcall(L, 2, 0, 0) == LUA_OK;
    }
    if (!ok)
        fprintf(stderr, "tide: setup's and teardown's own metrics could not be kept: %s\n",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "no tide.results");
    lua_settop(L, top);
    return ok;
}

static int report_workers(struct session *s, const char *dir, unsigned n)
{
    char **argv = xcalloc(n + 10, sizeof *argv);
    char own[4200];
    snprintf(own, sizeof own, "%s/coordinator-registry.json", dir);
    char **paths = xcalloc(n, sizeof *paths);
    char pg[2100];
    int argc = 0;
    for (unsigned i = 0; i < n; i++) {
        paths[i] = xmalloc(strlen(dir) + 32);
        sprintf(paths[i], "%s/worker-%u.json", dir, i + 1);
        if (access(paths[i], R_OK) == 0)
            argv[argc++] = paths[i];
    }
    argv[argc++] = "--check";
    if (write_own_registry(s, own))
        argv[argc++] = "--add-registry", argv[argc++] = own;
    if (s->cli.out.json)
        argv[argc++] = "--json", argv[argc++] = (char *)s->cli.out.json;
    if (s->cli.out.html)
        argv[argc++] = "--html", argv[argc++] = (char *)s->cli.out.html;
    if (s->cli.out.pg[0]) {
        snprintf(pg, sizeof pg, "pg:%s", s->cli.out.pg);
        argv[argc++] = "--store", argv[argc++] = pg;
    }
    int quiet_out = -1;
    if (s->cli.out.quiet) { /* --quiet: no summary on stdout, as for a run here */
        fflush(stdout);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        quiet_out = null >= 0 ? dup(1) : -1;
        if (quiet_out >= 0)
            dup2(null, 1);
        if (null >= 0)
            close(null);
    }
    int rc = cmd_lua("report", argc, argv);
    if (quiet_out >= 0) {
        fflush(stdout);
        dup2(quiet_out, 1);
        close(quiet_out);
    }
    for (unsigned i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    free(argv);
    return rc;
}

static void remove_docs(const char *dir, unsigned n, bool and_dir)
{
    char path[4200];
    for (unsigned i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/worker-%u.json", dir, i + 1);
        remove(path);
    }
    snprintf(path, sizeof path, "%s/coordinator-registry.json", dir);
    remove(path);
    if (and_dir)
        rmdir(dir);
}

/* --workers N: setup ran here; the load in N workers, teardown here, the
 * merged report. A missing share is exit 5, Ctrl-C 130. */
static int run_with_workers(struct session *s, const char *json, size_t json_len, int ctx_idx)
{
    char dir[4096];
    bool keep;
    if (!workers_docs_dir(dir, sizeof dir, &keep))
        return EXIT_USAGE;
    remove_docs(dir, s->cli.workers, false); /* a kept directory's documents of an earlier run */
    struct coord_plan plan = {.L = s->L, .path = s->path, .source = &s->source, .cli = &s->cli, .opt = &s->opt,
                              .data_json = json, .data_len = json_len, .sig = s->sig, .docs_dir = dir};
    struct coord_result res;
    coord_run(&plan, &res);
    if (res.interrupted)
        s->interrupted = 1;
    bool teardown_ok = run_teardown(s, ctx_idx);
    int rc = EXIT_WORKER;
    if (res.docs)
        rc = report_workers(s, dir, s->cli.workers);
    else
        fprintf(stderr, "tide: no worker handed back results: nothing to report\n");
    if (res.failed)
        fprintf(stderr, "tide: %u of %u workers failed: the results lack their share%s\n", res.failed,
                s->cli.workers, res.failed > 1 ? "s" : "");
    if (!keep)
        remove_docs(dir, s->cli.workers, true);
    if (s->interrupted)
        return EXIT_INTERRUPTED;
    if (res.failed)
        return EXIT_WORKER;
    return !teardown_ok ? EXIT_SCRIPT : rc;
}

static int run_session(struct session *s, enum run_mode mode, int argc, char **argv)
{
    int rc = run_args_parse(&s->cli, mode, argc, argv);
    if (!rc && s->cli.help) {
        run_usage(mode);
        return EXIT_PASS;
    }
    load_run_id(s->cli.out.run_id, sizeof s->cli.out.run_id);
    if (!rc)
        rc = open_scenario(s);
    if (!rc)
        rc = read_options(s);
    if (!rc)
        rc = check_exec_functions(s);
    if (!rc)
        rc = report_check_thresholds(s->L, s->mod_ref, s->ctx.metrics);
    if (!rc && s->cli.workers)
        rc = coord_check(&s->cli, &s->opt);
    char fds[256];
    if (!rc && !load_check_fds(&s->opt, fds, sizeof fds)) {
        fprintf(stderr, "tide run: %s\n", fds);
        rc = EXIT_USAGE;
    }
    if (rc)
        return rc;
    char *data_json = NULL;
    size_t json_len = 0;
    if (s->cli.data && (rc = load_data_file(s, &data_json, &json_len)) != 0)
        return rc;
    int data_idx = s->data;
    char **env = load_env(s->cli.env, s->cli.nenv);
    push_ctx(s, env);
    int ctx_idx = lua_gettop(s->L);
    if (s->cli.mode != MODE_RUN) {
        rc = run_hook_only(s, ctx_idx);
        free(env);
        return rc && s->sig->interrupts() ? EXIT_INTERRUPTED : rc;
    }
    const char *json = data_json;
    rc = s->cli.data ? 0 : run_setup(s, ctx_idx, &json, &json_len); /* --data: setup ran elsewhere, once */
    if (s->cli.data)
        s->data = data_idx;
    if (rc) {
        free(env);
        return s->sig->interrupts() ? EXIT_INTERRUPTED : rc;
    }
    if (s->cli.workers) {
        free(env);
        return run_with_workers(s, json, json_len, ctx_idx);
    }
    struct metrics *results = metrics_new();
    int load_rc = results ? run_load_phase(s, json, json_len, env, results) : EXIT_SCRIPT;
    free(env);
    bool teardown_ok = run_teardown(s, ctx_idx);
    if (results && !metrics_merge_custom(results, s->ctx.metrics))
        teardown_ok = false;
    int status = s->interrupted ? EXIT_INTERRUPTED : load_rc ? load_rc : !teardown_ok ? EXIT_SCRIPT : 0;
    struct report_in in = {.run_id = s->cli.out.run_id, .started = s->started, .finished = s->finished,
                           .status = status, .path = s->path, .opt = &s->opt,
                           .points = s->runner ? runner_points(s->runner) : &s->no_points,
                           .results = results, .elapsed = s->elapsed, .interrupted = s->interrupted > 0,
                           .aborted = s->aborted[0] ? s->aborted : NULL};
    int store = EXIT_STORE;
    int verdict = results ? report_finish(s->L, s->mod_ref, &in, &s->cli.out, &store) : EXIT_FAILED;
    metrics_free(results);
    /* what went wrong first wins; stored-elsewhere results outrank a failed verdict */
    return status ? status : store ? store : verdict;
}

static int run_command(enum run_mode mode, int argc, char **argv, const struct signals *sig,
                       const struct job_ctl *job)
{
    struct session *s = xcalloc(1, sizeof *s);
    if (!s)
        return EXIT_SCRIPT;
    s->sig = sig;
    s->job = job;
    s->cli.progress_every = 10;
    s->sink = (struct sink){.message = to_stderr};
    int rc = points_init(&s->no_points, 1) ? run_session(s, mode, argc, argv) : EXIT_SCRIPT;
    runner_free(s->runner);
    if (s->no_points.total)
        points_free(&s->no_points);
    scenario_source_free(&s->source);
    if (s->L) {
        once_free(s->ctx.once);
        tctx_close(&s->ctx);
    }
    free(s);
    return rc;
}

int cmd_run(enum run_mode mode, int argc, char **argv, const struct signals *sig)
{
    return run_command(mode, argc, argv, sig, NULL);
}

int cmd_run_job(int argc, char **argv, const struct signals *sig, const struct job_ctl *job)
{
    return run_command(MODE_RUN, argc, argv, sig, job);
}
