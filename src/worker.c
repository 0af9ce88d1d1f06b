/* `tide worker`: one job as a JSON line on standard input, its load run as
 * `tide run --segment I/N --data ... --start-at ... --run-id ...` would, its
 * results document on standard output (README, "Beyond one machine").
 * worker_run_job is that run, from the job's text to the document, which
 * `tide lambda` shares. */
#include "worker.h"
#include "exitcodes.h"
#include "options.h"
#include "run.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int luaopen_cjson(lua_State *L);

#define MAX_JOB (256u << 20)
#define MAX_ARGS (2 * MAX_CLI_ENV + 2 * MAX_OVERRIDES + 32)

/* The job: standard input up to its first newline (the coordinator keeps
 * the pipe open after it: its end means the coordinator is gone). */
static char *read_job(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *more = cap < MAX_JOB ? realloc(buf, cap *= 2) : NULL;
            if (!more)
                break;
            buf = more;
        }
        ssize_t got = read(0, buf + n, 1);   /* a byte at a time: nothing past the line is taken */
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || buf[n] == '\n') {
            *len = n;
            return n ? buf : (free(buf), NULL);
        }
        n++;
    }
    free(buf);
    return NULL;
}

static bool write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(text, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* The scenario as the coordinator read it: its own file when this host has
 * the same text there (relative data files resolve as they did), else a copy. */
static bool place_scenario(const char *path, const char *source, size_t len, const char *dir, char *out, size_t outlen)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f) {
        char *have = malloc(len + 1);
        bool same = have && fread(have, 1, len + 1, f) == len && memcmp(have, source, len) == 0;
        free(have);
        fclose(f);
        if (same) {
            snprintf(out, outlen, "%s", path);
            return true;
        }
    }
    const char *base = path && strrchr(path, '/') ? strrchr(path, '/') + 1 : "scenario.lua";
    snprintf(out, outlen, "%s/%s", dir, *base && strcmp(base, "..") ? base : "scenario.lua");
    return write_file(out, source, len);
}

static const char *str_field(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);   /* the string stays alive in the job table */
    return v;
}

struct job_args {
    const char *who;            /* "tide worker" or "tide lambda", for messages */
    char *argv[MAX_ARGS];
    int argc;
    char scenario[4096], data[4200], results[4200], segment[64], start_at[64];
};

static void add(struct job_args *a, const char *s)
{
    if (a->argc < MAX_ARGS - 1)
        a->argv[a->argc++] = (char *)s;
}

/* job.options: [[key, value], ...], as tide run's flags. The flags are Lua
 * strings of any length, kept alive in the job table (job.flags_). */
static void add_overrides(lua_State *L, int job, struct job_args *a, int max)
{
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, job, "flags_");
    int flags = lua_gettop(L);
    lua_getfield(L, job, "options");
    int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    for (int i = 1; i <= n && i <= max; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TTABLE) { /* not a [key, value] pair */
            lua_pop(L, 1);
            continue;
        }
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
        if (k && v) {
            if (strcmp(k, "compression") == 0 && strcmp(v, "false") == 0)
                lua_pushliteral(L, "--no-compression");
            else if (strcmp(k, "insecure") == 0 && strcmp(v, "true") == 0)
                lua_pushliteral(L, "--insecure");
            else
                lua_pushfstring(L, "--%s=%s", k, v);
            add(a, lua_tostring(L, -1));
            lua_rawseti(L, flags, i);
        }
        lua_pop(L, 3);
    }
    lua_pop(L, 2);
}

static void add_env(lua_State *L, int job, struct job_args *a)
{
    lua_getfield(L, job, "env");
    int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    for (int i = 1; i <= n && i <= MAX_CLI_ENV; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) == LUA_TSTRING) {
            add(a, "--env");
            add(a, lua_tostring(L, -1));
        }
        lua_pop(L, 1);   /* the string stays alive in the env table, itself in the job */
    }
    lua_pop(L, 1);
}

/* The job's fields as tide run's command line; false with a message. */
static bool job_to_args(lua_State *L, int job, const char *dir, struct job_args *a)
{
    size_t slen;
    lua_getfield(L, job, "source");
    const char *source = lua_tolstring(L, -1, &slen);
    lua_pop(L, 1);
    lua_getfield(L, job, "data_json");
    size_t dlen;
    const char *data = lua_tolstring(L, -1, &dlen);
    lua_pop(L, 1);
    long long si = 0, sn = 0;
    if (lua_getfield(L, job, "segment") == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        si = lua_tointeger(L, -2), sn = lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    lua_getfield(L, job, "start_at");
    double start = lua_tonumber(L, -1);
    lua_pop(L, 1);
    const char *run_id = str_field(L, job, "run_id");
    if (!source || !data || si < 1 || sn < si || !run_id) {
        fprintf(stderr, "%s: the job lacks source, data_json, segment [I, N] or run_id\n", a->who);
        return false;
    }
    snprintf(a->data, sizeof a->data, "%s/data.json", dir);
    snprintf(a->results, sizeof a->results, "json=%s/results.json", dir);
    if (!place_scenario(str_field(L, job, "path"), source, slen, dir, a->scenario, sizeof a->scenario) ||
        !write_file(a->data, data, dlen)) {
        fprintf(stderr, "%s: cannot write the job's files under %s: %s\n", a->who, dir, strerror(errno));
        return false;
    }
    snprintf(a->segment, sizeof a->segment, "%lld/%lld", si, sn);
    add(a, a->scenario);
    add(a, "--quiet");
    add(a, "--segment");
    add(a, a->segment);
    add(a, "--data");
    add(a, a->data);
    add(a, "--run-id");
    add(a, run_id);
    add(a, "--out");
    add(a, a->results);
    if (start > 0) {
        snprintf(a->start_at, sizeof a->start_at, "%.3f", start);
        add(a, "--start-at");
        add(a, a->start_at);
    }
    add_env(L, job, a);
    add_overrides(L, job, a, MAX_OVERRIDES);
    /* the coordinator's TIDE_HTTP_ENGINE over this host's: this process
     * runs only this job, and the run reads it as the coordinator did */
    const char *engine = str_field(L, job, "http_engine_env");
    if (engine && setenv(ENGINE_ENV, engine, 1) != 0) {
        fprintf(stderr, "tide worker: cannot set %s: %s\n", ENGINE_ENV, strerror(errno));
        return false;
    }
    return true;
}

/* The results document as it was written, into memory; NULL if none. */
static char *read_results(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *doc = malloc(cap);
    while (doc && (got = fread(doc + n, 1, cap - n, f)) > 0) {
        n += got;
        char *more = n == cap ? realloc(doc, cap *= 2) : doc;
        if (!more)
            free(doc);
        doc = more;
    }
    bool ok = doc && !ferror(f) && n > 0;
    fclose(f);
    if (!ok) {
        free(doc);
        return NULL;
    }
    *len = n;
    return doc;
}

static void run_decoded_job(lua_State *L, const char *dir, const struct signals *sig, const struct job_ctl *ctl,
                            struct job_result *out)
{
    struct job_args *a = calloc(1, sizeof *a);
    out->rc = EXIT_USAGE;
    if (!a)
        return;
    a->who = out->who;
    if (job_to_args(L, lua_gettop(L), dir, a)) {
        out->rc = cmd_run_job(a->argc, a->argv, sig, ctl);
        out->doc = read_results(a->results + 5, &out->len);
        if (!out->doc && out->rc != EXIT_USAGE) {
            fprintf(stderr, "%s: no results document to hand back\n", out->who);
            out->rc = out->rc ? out->rc : EXIT_SCRIPT;
        }
        remove(a->results + 5);
        remove(a->data);
        if (strncmp(a->scenario, dir, strlen(dir)) == 0)
            remove(a->scenario);
    }
    free(a);
}

void worker_run_job(const char *text, size_t len, const struct signals *sig, const struct job_ctl *ctl,
                    struct job_result *out)
{
    out->rc = EXIT_USAGE;
    out->doc = NULL;
    out->len = 0;
    /* a job's http_engine_env is for that job alone: the process (a warm
     * Lambda function runs many jobs) gets its own back afterwards */
    const char *had = getenv(ENGINE_ENV);
    char *saved = had ? strdup(had) : NULL;
    lua_State *L = luaL_newstate();
    const char *tmp = getenv("TMPDIR");
    char dir[2048]; /* the job's files are named under it in buffers of 4096 */
    snprintf(dir, sizeof dir, "%s/tide-worker-XXXXXX", tmp && *tmp && strlen(tmp) < 2000 ? tmp : "/tmp");
    if (L && mkdtemp(dir)) {
        luaL_requiref(L, "cjson", luaopen_cjson, 0);
        lua_getfield(L, -1, "decode");
        lua_pushlstring(L, text, len);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1))
            run_decoded_job(L, dir, sig, ctl, out);
        else
            fprintf(stderr, "%s: the job is not a JSON object: %s\n", out->who,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "(not an object)");
        rmdir(dir);
    } else {
        fprintf(stderr, "%s: cannot make a temporary directory: %s\n", out->who, strerror(errno));
    }
    if (L)
        lua_close(L);
    if (saved)
        setenv(ENGINE_ENV, saved, 1);
    else
        unsetenv(ENGINE_ENV);
    free(saved);
}

int cmd_worker(int argc, char **argv, const struct signals *sig)
{
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "usage: tide worker   (reads one job as a JSON line on standard input;\n"
                        "                      README, \"Beyond one machine\")\n");
        return EXIT_USAGE;
    }
    size_t len = 0;
    char *text = read_job(&len);
    if (!text) {
        fprintf(stderr, "tide worker: no job on standard input (one JSON line)\n");
        return EXIT_USAGE;
    }
    struct job_ctl ctl = {.watch_input = true, .stream = true};
    struct job_result res = {.who = "tide worker"};
    worker_run_job(text, len, sig, &ctl, &res);
    free(text);
    if (res.doc && (fwrite(res.doc, 1, res.len, stdout) != res.len || fflush(stdout) != 0)) {
        fprintf(stderr, "tide worker: the results document could not be written to standard output\n");
        res.rc = res.rc ? res.rc : EXIT_SCRIPT;
    }
    free(res.doc);
    return res.rc;
}
