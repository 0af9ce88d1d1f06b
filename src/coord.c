/* The coordinator of tide run --workers N --via local: N child processes of
 * this binary (`tide worker`), a job each on standard input, their figures
 * read from their stderr as they go, their results documents from stdout.
 * --via ssh: the same through ssh. --via lambda: each child is a fork of
 * this process that makes one Lambda Invoke call and hands back its payload
 * on the same pipes, so the watching, judging and merging are the same. */
#include "coord.h"
#include "clock.h"
#include "exitcodes.h"
#include "lambda_invoke.h"
#include "xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A worker silent this long after the load should have ended is given up. */
#define SILENCE_LIMIT 30.0
/* The common start: this far ahead, so every worker is ready by then. */
#define START_AHEAD 2.0
#define START_AHEAD_SSH 5.0       /* an SSH login takes a while */
#define START_AHEAD_LAMBDA 5.0    /* a cold start, and throttled invokes retried */

static bool is_lambda(const char *via)
{
    return via && strncmp(via, "lambda:", 7) == 0;
}

/* Worker i's host: "local", or the i-th of ssh:HOST[,HOST...] round robin. */
static void host_of(const char *via, unsigned i, char *host, size_t len)
{
    if (!via || strncmp(via, "ssh:", 4) != 0) {
        snprintf(host, len, "%s", is_lambda(via) ? via : "local");
        return;
    }
    const char *list = via + 4;
    unsigned count = 1;
    for (const char *c = list; *c; c++)
        count += *c == ',';
    const char *h = list;
    for (unsigned k = i % count; k > 0; k--)
        h = strchr(h, ',') + 1;
    size_t n = strcspn(h, ",");
    snprintf(host, len, "%.*s", (int)(n < len ? n : len - 1), h);
}

struct worker {
    pid_t pid;
    char host[256];             /* "local", or the SSH host it runs on */
    char bin[128];              /* the tide to run there ("": $TIDE_REMOTE_BIN or tide) */
    int in, out, err;           /* pipe ends; -1 once closed */
    char *doc;                  /* its standard output: the results document */
    size_t ndoc, capdoc;
    char line[4096];            /* its stderr, a line at a time */
    size_t nline;
    uint64_t reqs, failed, iterations, vus;
    double heard;               /* when it last said something */
    int status;                 /* from waitpid */
    bool killed_silent;
    bool no_job;                   /* it took no job within SILENCE_LIMIT (killed) */
    bool lambda;                /* an Invoke call made by a child of this process */
    bool abandoned;             /* lambda, Ctrl-C: the coordinator stopped waiting for it */
    char said[400];             /* its last message that was not a figures line */
};

/* The job for segment i of n, one JSON line (README, "Beyond one machine"). */
static char *encode_job(const struct coord_plan *p, unsigned i, double start_at, size_t *len)
{
    lua_State *L = p->L;
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "encode");
    lua_createtable(L, 0, 10);
    lua_pushlstring(L, p->source->text, p->source->len);
    lua_setfield(L, -2, "source");
    lua_pushstring(L, p->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, p->cli->scenario);
    lua_setfield(L, -2, "scenario");
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, i + 1);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, p->cli->workers);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "segment");
    if (p->data_json)
        lua_pushlstring(L, p->data_json, p->data_len);
    else
        lua_pushliteral(L, "null");
    lua_setfield(L, -2, "data_json");
    lua_pushnumber(L, start_at);
    lua_setfield(L, -2, "start_at");
    lua_pushstring(L, p->cli->out.run_id);
    lua_setfield(L, -2, "run_id");
    lua_createtable(L, p->cli->nenv, 0);
    for (int k = 0; k < p->cli->nenv; k++) {
        lua_pushstring(L, p->cli->env[k]);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "env");
    lua_createtable(L, p->cli->noverrides, 0);
    for (int k = 0; k < p->cli->noverrides; k++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, p->cli->overrides[k].key);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, p->cli->overrides[k].value);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "options");
    /* ssh does not carry the environment: the engine chosen here by
     * TIDE_HTTP_ENGINE travels in the job (flag and option travel as such) */
    const char *engine = getenv(ENGINE_ENV);
    if (engine && *engine) {
        lua_pushstring(L, engine);
        lua_setfield(L, -2, "http_engine_env");
    }
    char *job = NULL;
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        const char *s = lua_tolstring(L, -1, len);
        job = xmalloc(*len + 1);
        memcpy(job, s, *len);
        job[(*len)++] = '\n';
    }
    lua_settop(L, top);
    return job;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* `ssh [-F $TIDE_SSH_CONFIG] -o BatchMode=yes HOST ${TIDE_REMOTE_BIN:-tide} worker`:
 * the job and the results go through ssh's stdio; when the coordinator
 * closes ssh's stdin, the remote worker's stdin closes too. */
static void exec_ssh(const char *host, const char *copied)
{
    const char *config = getenv("TIDE_SSH_CONFIG"), *bin = *copied ? copied : getenv("TIDE_REMOTE_BIN");
    char remote[4200];
    snprintf(remote, sizeof remote, "%s worker", bin && *bin ? bin : "tide");
    if (config && *config)
        execlp("ssh", "ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--", host, remote,
               (char *)NULL);
    else
        execlp("ssh", "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--", host, remote, (char *)NULL);
    fprintf(stderr, "could not start ssh: %s\n", strerror(errno));
}

/* A Lambda worker's call: what to invoke, how long an attempt may take,
 * until when a throttled call is tried again. */
struct lambda_call {
    const struct lambda_target *t;
    double timeout, retry_until;
};

/* One child: `tide worker` with the job on its stdin (kept open: its end
 * tells the worker that the coordinator is gone), or with lc the Invoke
 * call itself (no exec: it has all it needs, and libcurl is initialised).
 * In its own process group, so a Ctrl-C at the terminal reaches it once,
 * forwarded, not twice. */
/* The job into a worker's stdin: a job is larger than a pipe holds, and an
 * ssh worker reads it only once logged in, so the write waits at most
 * SILENCE_LIMIT; a worker that takes no job by then is killed and named. */
static bool send_job(struct worker *w, const char *job, size_t len)
{
    fcntl(w->in, F_SETFL, fcntl(w->in, F_GETFL) | O_NONBLOCK);
    double deadline = clock_wall_s() + SILENCE_LIMIT;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(w->in, job + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && clock_wall_s() < deadline) {
            struct pollfd pf = {.fd = w->in, .events = POLLOUT};
            poll(&pf, 1, 200);
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            w->no_job = true;
            kill(-w->pid, SIGKILL);
            close_fd(&w->in);
            return false;
        }
        break; /* it died at once: its stderr and exit status say why */
    }
    return true;
}

static bool spawn(struct worker *w, const char *job, size_t len, const struct lambda_call *lc)
{
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        snprintf(w->said, sizeof w->said, "could not start: pipe: %s", strerror(errno));
        return false;
    }
    w->pid = fork();
    if (w->pid == 0) {
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (lc)
            _exit(lambda_invoke(lc->t, job, len && job[len - 1] == '\n' ? len - 1 : len, lc->timeout,
                                lc->retry_until));
        if (strcmp(w->host, "local") == 0) {
            execl("/proc/self/exe", "tide", "worker", (char *)NULL);
            fprintf(stderr, "could not start /proc/self/exe worker: %s\n", strerror(errno));
        } else {
            exec_ssh(w->host, w->bin);
        }
        _exit(127);
    }
    close(in[0]), close(out[1]), close(err[1]);
    w->in = in[1], w->out = out[0], w->err = err[0];
    if (w->pid < 0) {
        snprintf(w->said, sizeof w->said, "could not start: fork: %s", strerror(errno));
        close_fd(&w->in), close_fd(&w->out), close_fd(&w->err);
        return false;
    }
    return lc || send_job(w, job, len);
}

/* A line on a worker's stderr: its figures so far, or a message shown with its number. */
static void worker_line(struct worker *w, unsigned i, unsigned n, const char *line)
{
    unsigned long long r, f, it, v;
    if (sscanf(line, "{\"tide_worker\":1,\"elapsed\":%*f,\"requests\":%llu,\"failures\":%llu,"
                     "\"iterations\":%llu,\"vus\":%llu}", &r, &f, &it, &v) == 4) {
        w->reqs = r, w->failed = f, w->iterations = it, w->vus = v;
        return;
    }
    if (!*line)
        return;
    fprintf(stderr, "tide: worker %u/%u: %s\n", i + 1, n, line);
    const char *text = strncmp(line, "tide: ", 6) == 0 ? line + 6 : line;
    if (strncmp(text, "stack traceback", 15) != 0 && line[0] != '\t')
        snprintf(w->said, sizeof w->said, "%s", text);
}

static void read_err(struct worker *w, unsigned i, unsigned n)
{
    char buf[4096];
    ssize_t got = read(w->err, buf, sizeof buf);
    if (got <= 0) {
        if (got == 0 || errno != EINTR) {
            if (w->nline) {
                w->line[w->nline] = '\0';
                worker_line(w, i, n, w->line);
                w->nline = 0;
            }
            close_fd(&w->err);
        }
        return;
    }
    for (ssize_t k = 0; k < got; k++) {
        if (buf[k] == '\n' || w->nline == sizeof w->line - 1) {
            w->line[w->nline] = '\0';
            worker_line(w, i, n, w->line);
            w->nline = 0;
            if (buf[k] == '\n')
                continue;
        }
        w->line[w->nline++] = buf[k];
    }
}

static void read_out(struct worker *w)
{
    if (w->capdoc - w->ndoc < 65536) {
        w->capdoc = w->capdoc ? w->capdoc * 2 : 1 << 20;
        w->doc = xrealloc(w->doc, w->capdoc);
    }
    ssize_t got = read(w->out, w->doc + w->ndoc, w->capdoc - w->ndoc);
    if (got > 0)
        w->ndoc += (size_t)got;
    else if (got == 0 || errno != EINTR)
        close_fd(&w->out);
}

/* When the load should be over, for every scenario: its start, its duration
 * (an iteration executor's maximum) and its graceful stop. */
static double planned_end(const struct options *o, double start_at)
{
    double end = 0;
    for (int i = 0; i < o->nscen; i++) {
        const struct scen *sc = &o->scen[i];
        double e = sc->start_time + sc->duration + sc->graceful_stop;
        if (e > end)
            end = e;
    }
    return start_at + end;
}

struct watch {
    struct worker *w;
    unsigned n;
    const struct coord_plan *p;
    double end;
    int presses;
    double next_line;
};

static void show_progress(struct watch *c, double t, bool final)
{
    const struct run_args *cli = c->p->cli;
    bool tty = isatty(2);
    double every = tty ? 1 : cli->progress_every;
    if (cli->out.quiet || (!final && (every <= 0 || t < c->next_line)) || (final && !tty))
        return;
    c->next_line = t + every;
    uint64_t r = 0, f = 0, it = 0, v = 0;
    unsigned running = 0;
    for (unsigned i = 0; i < c->n; i++) {
        r += c->w[i].reqs, f += c->w[i].failed, it += c->w[i].iterations, v += c->w[i].vus;
        running += c->w[i].out >= 0 || c->w[i].err >= 0;
    }
    fprintf(stderr, "%sworkers %u/%u running  vus %" PRIu64 "  requests %" PRIu64 "  failed %" PRIu64
                    "  iterations %" PRIu64 "%s", tty ? "\r\033[K" : "", running, c->n, v, r, f, it,
            tty && !final ? "" : "\n");
}

/* Ctrl-C: each press forwarded to every worker still running (the first
 * lets running iterations finish, the second cuts them; they still hand back
 * their results). A worker over ssh gets its stdin closed on the first
 * press (it stops as on a first Ctrl-C), ssh a SIGINT on the next. A Lambda
 * invocation cannot be cancelled: the first press stops waiting for it. */
static void forward_presses(struct watch *c)
{
    int now = c->p->sig->interrupts();
    for (; c->presses < now; c->presses++)
        for (unsigned i = 0; i < c->n; i++) {
            struct worker *w = &c->w[i];
            if (w->pid <= 0 || (w->out < 0 && w->err < 0) || w->abandoned)
                continue;
            if (w->lambda)
                w->abandoned = true, kill(w->pid, SIGKILL);
            else if (strcmp(w->host, "local") != 0 && w->in >= 0)
                close_fd(&w->in);   /* over ssh a signal would end ssh, not the worker: its stdin ends */
            else
                kill(w->pid, SIGINT);
        }
}

/* One poll over every worker's output; false when none is left to read. */
static bool watch_once(struct watch *c)
{
    struct pollfd fds[2 * MAX_WORKERS + 1];
    unsigned owner[2 * MAX_WORKERS + 1];
    nfds_t nf = 0;
    double t = clock_wall_s();
    for (unsigned i = 0; i < c->n; i++) {
        struct worker *w = &c->w[i];
        if (w->out < 0 && w->err < 0)
            continue;
        /* an Invoke call times out on its own at SILENCE_LIMIT past the end; this is a backstop */
        double limit = w->lambda ? 2 * SILENCE_LIMIT : SILENCE_LIMIT;
        if (!w->killed_silent && t > c->end && t - w->heard > limit) {
            w->killed_silent = true;
            kill(w->pid, SIGKILL);
        }
        if (w->out >= 0)
            fds[nf] = (struct pollfd){.fd = w->out, .events = POLLIN}, owner[nf++] = i;
        if (w->err >= 0)
            fds[nf] = (struct pollfd){.fd = w->err, .events = POLLIN}, owner[nf++] = i;
    }
    if (!nf)
        return false;
    if (c->p->sig->fd >= 0)
        fds[nf++] = (struct pollfd){.fd = c->p->sig->fd, .events = POLLIN};
    int ready = poll(fds, nf, 200);
    forward_presses(c);
    if (c->p->sig->fd >= 0) {
        uint64_t drain;
        if (fds[nf - 1].revents && read(c->p->sig->fd, &drain, sizeof drain) < 0) {
            /* nothing to drain: the press counter is what counts */
        }
        nf--;
    }
    for (nfds_t k = 0; ready > 0 && k < nf; k++) {
        if (!fds[k].revents)
            continue;
        struct worker *w = &c->w[owner[k]];
        w->heard = clock_wall_s();
        if (fds[k].fd == w->out)
            read_out(w);
        else
            read_err(w, owner[k], c->n);
    }
    show_progress(c, clock_wall_s(), false);
    return true;
}

static void reap(struct worker *w)
{
    close_fd(&w->in);
    if (w->pid > 0)
        while (waitpid(w->pid, &w->status, 0) < 0 && errno == EINTR)
            ;
}

/* Why a worker's share is missing, or "" when its document counts. */
static void judge(const struct worker *w, bool interrupted, char *why, size_t len)
{
    int code = w->pid > 0 && WIFEXITED(w->status) ? WEXITSTATUS(w->status) : -1;
    bool doc = w->ndoc > 1 && w->doc[0] == '{';
    why[0] = '\0';
    if (w->pid <= 0)
        snprintf(why, len, "%s", w->said);
    else if (w->no_job)
        snprintf(why, len, "could not start: it did not take its job in %.0fs (killed)", SILENCE_LIMIT);
    else if (w->abandoned)
        snprintf(why, len, "interrupted: the coordinator stopped waiting (the invocation runs on in Lambda "
                           "until its load ends)");
    else if (w->lambda && w->killed_silent)
        snprintf(why, len, "no answer %.0fs past the end of the load (given up)", 2 * SILENCE_LIMIT);
    else if (w->lambda && WIFEXITED(w->status) && code != 0)
        snprintf(why, len, "%s", w->said[0] ? w->said : "the invoke failed (no reason given)");
    else if (w->killed_silent)
        snprintf(why, len, "said nothing for %.0fs past the end of the load (killed)", SILENCE_LIMIT);
    else if (WIFSIGNALED(w->status))
        snprintf(why, len, "died (signal %d, %s)", WTERMSIG(w->status), strsignal(WTERMSIG(w->status)));
    else if (code == 127)
        snprintf(why, len, "failed to start: %s", w->said);
    else if (!(code == 0 || code == 1 || (code == 130 && interrupted)))
        snprintf(why, len, "exited with code %d%s%s", code, w->said[0] ? ": " : "", w->said);
    else if (!doc)
        snprintf(why, len, "exited with code %d but handed back no results document", code);
}

static bool write_doc(const char *dir, unsigned i, const struct worker *w)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/worker-%u.json", dir, i + 1);
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(w->doc, 1, w->ndoc, f) == w->ndoc;
    return fclose(f) == 0 && ok;
}

static lua_Integer field_path(lua_State *L, int t, const char *a, const char *b, const char *c, const char *d)
{
    const char *path[] = {a, b, c, d};
    int top = lua_gettop(L);
    lua_pushvalue(L, t);
    for (int i = 0; i < 4 && lua_istable(L, -1); i++)
        lua_getfield(L, -1, path[i]);
    lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_settop(L, top);
    return v;
}

/* A Lambda worker streams no figures: its requests and failed ones from its document. */
static void figures_from_doc(lua_State *L, struct worker *w)
{
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, w->doc, w->ndoc);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        int doc = lua_gettop(L);
        w->reqs = (uint64_t)field_path(L, doc, "metrics", "http_reqs", "values", "count");
        w->failed = (uint64_t)field_path(L, doc, "metrics", "http_req_failed", "values", "passes");
    }
    lua_settop(L, top);
}

/* One line per worker; its document written when it counts. */
static void collect(struct watch *c, struct coord_result *out)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct worker *w = &c->w[i];
        char why[600];
        judge(w, out->interrupted, why, sizeof why);
        if (!why[0] && w->lambda)
            figures_from_doc(c->p->L, w);
        if (!why[0] && !write_doc(c->p->docs_dir, i, w))
            snprintf(why, sizeof why, "its results could not be written under %s: %s", c->p->docs_dir,
                     strerror(errno));
        int code = w->pid > 0 && WIFEXITED(w->status) ? WEXITSTATUS(w->status) : -1;
        fprintf(stderr, "tide: worker %u/%u  segment %u/%u  host %s  requests %" PRIu64 "  errors %" PRIu64
                        "  exit %d%s%s\n", i + 1, c->n, i + 1, c->n, w->host, w->reqs, w->failed, code,
                why[0] ? "  FAILED: " : "", why);
        if (why[0])
            out->failed++;
        else
            out->docs++;
        free(w->doc);
    }
}

/* Runs `ssh|scp [-F $TIDE_SSH_CONFIG] -o BatchMode=yes ARGS...` and waits
 * (at most 120 s); its first output line into out. True when it exited 0. */
static bool run_ssh_tool(const char *tool, const char *const *args, char *out, size_t outlen)
{
    const char *config = getenv("TIDE_SSH_CONFIG");
    const char *argv[20];
    int n = 0;
    argv[n++] = tool;
    if (config && *config)
        argv[n++] = "-F", argv[n++] = config;
    argv[n++] = "-q", argv[n++] = "-o", argv[n++] = "BatchMode=yes", argv[n++] = "-o", argv[n++] = "ConnectTimeout=10";
    for (int i = 0; args[i] && n < 19; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fd[2];
    if (pipe2(fd, O_CLOEXEC))
        return false;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        execvp(tool, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    struct pollfd pf = {.fd = fd[0], .events = POLLIN};
    double deadline = clock_wall_s() + 120;
    bool eof = false;
    while (!eof && clock_wall_s() < deadline) {
        int ready = poll(&pf, 1, 1000);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready <= 0)
            continue;
        char buf[256];
        if ((r = read(fd[0], buf, sizeof buf)) <= 0) {
            eof = r == 0 || errno != EINTR;
            continue;
        }
        for (ssize_t i = 0; i < r && got + 1 < outlen; i++)
            out[got++] = buf[i];
    }
    close(fd[0]);
    if (outlen)
        out[got < outlen ? got : outlen - 1] = '\0';
    out[strcspn(out, "\n")] = '\0';
    int status = 0;
    if (pid < 0)
        return false;
    if (!eof) /* out of time (or poll failed): the tool goes, so waitpid cannot block */
        kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void remove_copy(const char *host, const char *bin)
{
    char rm[256], ignored[64];
    snprintf(rm, sizeof rm, "rm -f %s", bin);
    const char *args[] = {"--", host, rm, NULL};
    run_ssh_tool("ssh", args, ignored, sizeof ignored);
}

/* --ssh-copy: this binary to a fresh temp path on host, into bin. */
static bool copy_to_host(const char *host, char *bin, size_t len, char *why, size_t whylen)
{
    const char *mk[] = {"--", host, "mktemp /tmp/tide.XXXXXXXX", NULL};
    if (!run_ssh_tool("ssh", mk, bin, len) || bin[0] != '/' || strpbrk(bin, " '\"\\;&|$`")) {
        snprintf(why, whylen, "could not start: --ssh-copy could not make a temp file on %s", host);
        bin[0] = '\0';
        return false;
    }
    char dest[512], ignored[64], self[4096];
    snprintf(dest, sizeof dest, "%s:%s", host, bin);
    /* resolved here: in scp's own process /proc/self/exe is scp */
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn > 0 ? sn : 0] = '\0';
    const char *cp[] = {self, dest, NULL};
    char chmod_cmd[256];
    snprintf(chmod_cmd, sizeof chmod_cmd, "chmod 700 %s", bin);
    const char *ch[] = {"--", host, chmod_cmd, NULL};
    if (!run_ssh_tool("scp", cp, ignored, sizeof ignored) || !run_ssh_tool("ssh", ch, ignored, sizeof ignored)) {
        snprintf(why, whylen, "could not start: --ssh-copy could not copy tide to %s:%s", host, bin);
        remove_copy(host, bin);
        bin[0] = '\0';
        return false;
    }
    return true;
}

/* One copy per host, shared by its workers (hosts go round robin). */
static void copy_binaries(struct worker *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned k = 0;
        while (k < i && strcmp(w[k].host, w[i].host) != 0)
            k++;
        if (k < i) { /* copied (or not) for an earlier worker on this host */
            memcpy(w[i].bin, w[k].bin, sizeof w[i].bin);
            memcpy(w[i].said, w[k].said, sizeof w[i].said);
        } else {
            copy_to_host(w[i].host, w[i].bin, sizeof w[i].bin, w[i].said, sizeof w[i].said);
        }
    }
}

static void remove_binaries(struct worker *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        bool first = w[i].bin[0] != '\0';
        for (unsigned k = 0; k < i && first; k++)
            first = strcmp(w[k].bin, w[i].bin) != 0 || strcmp(w[k].host, w[i].host) != 0;
        if (first)
            remove_copy(w[i].host, w[i].bin);
    }
}

int coord_check(const struct run_args *cli, const struct options *opt)
{
    if (!is_lambda(cli->via))
        return 0;
    struct lambda_target t;
    char err[600];
    if (!lambda_target_load(cli->via, cli->lambda_endpoint, &t, err, sizeof err)) {
        fprintf(stderr, "tide run: %s\n", err);
        return EXIT_USAGE;
    }
    double length = planned_end(opt, 0);
    if (length + START_AHEAD_LAMBDA + LAMBDA_STOP_MARGIN_MAX > LAMBDA_MAX_SECONDS) {
        fprintf(stderr, "tide run: --via %s: the load may last %.0fs (its duration and graceful stop), more than "
                        "the %ds a Lambda invocation may run less %.0fs to start and %.0fs to hand back its "
                        "results\n", cli->via, length, LAMBDA_MAX_SECONDS, START_AHEAD_LAMBDA,
                LAMBDA_STOP_MARGIN_MAX);
        return EXIT_USAGE;
    }
    return 0;
}

/* Where the workers run, as the start line says it. */
static const char *via_name(const char *via)
{
    return via && strcmp(via, "local") != 0 ? via : "local";
}

void coord_run(const struct coord_plan *p, struct coord_result *out)
{
    unsigned n = p->cli->workers;
    bool ssh = p->cli->via && strncmp(p->cli->via, "ssh:", 4) == 0, lambda = is_lambda(p->cli->via);
    double ahead = ssh ? START_AHEAD_SSH : lambda ? START_AHEAD_LAMBDA : START_AHEAD;
    double start_at = p->cli->start_at > 0 ? p->cli->start_at : clock_wall_s() + ahead;
    struct lambda_target target;
    char target_err[600] = "";
    if (lambda && !lambda_target_load(p->cli->via, p->cli->lambda_endpoint, &target, target_err, sizeof target_err))
        lambda = false; /* coord_check passed: only a changed environment gets here; every worker is named */
    int presses_before = p->sig->interrupts();
    struct watch c = {.w = xcalloc(n, sizeof *c.w), .n = n, .p = p, .end = planned_end(p->opt, start_at),
                      .presses = p->sig->interrupts()};
    *out = (struct coord_result){0};
    for (unsigned i = 0; i < n; i++) {
        c.w[i].in = c.w[i].out = c.w[i].err = -1;
        host_of(p->cli->via, i, c.w[i].host, sizeof c.w[i].host);
        c.w[i].lambda = lambda;
        if (target_err[0])
            snprintf(c.w[i].said, sizeof c.w[i].said, "could not start: %.370s", target_err);
    }
    if (ssh && p->cli->ssh_copy) {
        copy_binaries(c.w, n);
        if (p->cli->start_at <= 0) { /* copying took its time: the start stays ahead */
            start_at = clock_wall_s() + START_AHEAD_SSH;
            c.end = planned_end(p->opt, start_at);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &c.w[i];
        w->heard = clock_wall_s();
        if (w->said[0]) /* its copy failed: named, not started */
            continue;
        size_t len = 0;
        char *job = encode_job(p, i, start_at, &len);
        /* an attempt may take until SILENCE_LIMIT past the end, as long as other workers may stay silent */
        struct lambda_call call = {.t = &target, .timeout = c.end + SILENCE_LIMIT - clock_wall_s(),
                                   .retry_until = start_at};
        if (!job)
            snprintf(w->said, sizeof w->said, "could not start: its job could not be encoded");
        else
            spawn(w, job, len, lambda ? &call : NULL);
        free(job);
    }
    if (!p->cli->out.quiet)
        fprintf(stderr, "tide: %u workers (%s), run %s, the load starts in %.1fs\n", n, via_name(p->cli->via),
                p->cli->out.run_id,
                start_at - clock_wall_s());
    while (watch_once(&c))
        ;
    show_progress(&c, clock_wall_s(), true);
    for (unsigned i = 0; i < n; i++)
        reap(&c.w[i]);
    if (ssh && p->cli->ssh_copy)
        remove_binaries(c.w, n);
    out->interrupted = p->sig->interrupts() > presses_before;
    collect(&c, out);
    free(c.w);
}
