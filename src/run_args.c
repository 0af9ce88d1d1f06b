/* `tide run`'s command line, walked once: the scenario, the outputs, the
 * environment, and the option overrides (checked now, applied over the
 * scenario's own options once it is loaded). */
#include "run_args.h"
#include "clock.h"
#include "exitcodes.h"
#include "lambda_invoke.h"
#include "redact.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void setup_teardown_usage(enum run_mode mode)
{
    if (mode == MODE_SETUP)
        printf("usage: tide setup SCENARIO [--target URL] [--env KEY=VALUE]... [--out-data FILE]\n\n"
               "Runs only the scenario's setup(ctx) and writes what it returns as JSON to FILE\n"
               "(stdout by default), for `tide run ... --data FILE` on one or many machines.\n"
               "Takes the options of tide run that shape ctx (--vus, --iterations, ...).\n"
               "Exit codes as for tide run: 0 done, 2 bad command line, 3 setup failed.\n");
    else
        printf("usage: tide teardown SCENARIO --data FILE [--target URL] [--env KEY=VALUE]...\n\n"
               "Runs only the scenario's teardown(ctx, data) with the data tide setup wrote.\n"
               "Exit codes as for tide run: 0 done, 2 bad command line or FILE, 3 teardown failed.\n");
}

void run_usage(enum run_mode mode)
{
    if (mode != MODE_RUN) {
        setup_teardown_usage(mode);
        return;
    }
    printf("usage: tide run SCENARIO [options]\n\n"
           "SCENARIO is a Lua file, or NAME for scenarios/NAME.lua (also looked up in the\n"
           "directories of $TIDE_PATH, then among the scenarios built into tide).\n"
           "Options override the scenario's `options` table:\n"
           "  --vus N              virtual users (default 1)\n"
           "  --duration D         how long (30s, 1m30s); max duration for iteration executors\n"
           "  --iterations N       iterations (per user for per-vu-iterations)\n"
           "  --executor NAME      shared-iterations | per-vu-iterations | constant-vus |\n"
           "                       ramping-vus | constant-arrival-rate | ramping-arrival-rate\n"
           "  --graceful-stop D    time running iterations get to finish at the end (30s)\n"
           "  --threads N          engine threads (default: one per core)\n"
           "  --target URL         the service under test: ctx.target / vu.target\n"
           "  --env KEY=VALUE      seen in ctx.env / vu.env (repeatable; the process\n"
           "                       environment is there too)\n"
           "  --max-body SIZE      keep at most SIZE of each response body (64MB)\n"
           "  --lua-memory SIZE    memory each Lua state (one per engine thread) may use\n"
           "                       (1GiB; at least 1MiB)\n"
           "  --max-names N        request names with their own series; the rest: (other) (10000)\n"
           "  --no-compression     send no Accept-Encoding, keep bodies as received\n"
           "  --insecure           accept any TLS certificate (self-signed staging servers)\n"
           "  --ca FILE            trust the CA certificates in FILE (PEM) for https://\n"
           "  --http-engine auto|curl\n"
           "                       auto (default): plain HTTP/1.1 requests take tide's lean\n"
           "                       transport, the rest libcurl; curl: libcurl for all\n"
           "                       (over options.http_engine, itself over $TIDE_HTTP_ENGINE)\n"
           "  --out json=FILE      write the results (k6 summary shape + histograms + points)\n"
           "  --out csv=FILE       one row per metric and aggregate per second\n"
           "  --out html=FILE      a self-contained HTML report with charts\n"
           "  --out pg=DSN         store in PostgreSQL (--out pg: $DATABASE_URL); repeatable\n"
           "  --run-id ID          the run's id (default $GITHUB_RUN_ID, else a timestamp)\n"
           "  --segment I/N        run share I of N of the load (1 <= I <= N): users,\n"
           "                       iterations and arrivals split exactly, vu.id unique over all\n"
           "  --start-at TIME      after setup, wait until TIME to start the load (RFC 3339 UTC,\n"
           "                       2026-12-04T22:30:00Z, or Unix seconds); at most 1s in the past\n"
           "  --data FILE          setup's data from FILE (written by tide setup): runs neither\n"
           "                       setup nor teardown\n"
           "  --workers N          run the load in N tide worker processes (segments 1/N..N/N):\n"
           "                       setup and teardown once here, their results merged exactly\n"
           "  --via local|ssh:HOST[,HOST...]|lambda:FUNCTION[:QUALIFIER]\n"
           "                       where the workers run: child processes of this tide,\n"
           "                       `ssh HOST tide worker` (hosts in turn), or one AWS Lambda\n"
           "                       invocation each (credentials and region from AWS_ACCESS_KEY_ID,\n"
           "                       AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION)\n"
           "  --lambda-endpoint URL\n"
           "                       with --via lambda: the Lambda API's URL (default\n"
           "                       https://lambda.REGION.amazonaws.com)\n"
           "  --ssh-copy           with --via ssh: copy this tide to a temp path on each host\n"
           "                       first (scp), for hosts without tide; removed afterwards\n"
           "  --progress N         a progress line every N seconds when stderr is not a\n"
           "                       terminal (default 10; 0 for none)\n"
           "  --quiet              no summary on stdout, no progress\n");
}

int run_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "tide run: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

/* A file output must be creatable: its directory writable, the file too if it exists. */
static int check_writable(const char *kind, const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    if ((n && path[n - 1] == '/') || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, "tide run: --out %s=%s: that is a directory, a file name is needed\n", kind, path);
        return EXIT_USAGE;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    const char *d = slash ? dir : ".";
    if (access(d, W_OK) != 0 || (access(path, F_OK) == 0 && access(path, W_OK) != 0)) {
        fprintf(stderr, "tide run: --out %s=%s: cannot write there: %s\n", kind, path, strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

static int parse_pg_out(struct run_args *c, const char *dsn)
{
    if (!dsn || !*dsn)
        return run_usage_error("--out pg: no DSN given and $DATABASE_URL is not set (%s)", "use --out pg=DSN");
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    PQconninfoFree(opts);
    if (!opts) {
        char clean[2048];
        redact_password(err ? err : "out of memory\n", dsn, clean, sizeof clean);
        fprintf(stderr, "tide run: --out pg: the DSN does not parse: %s", clean);
        PQfreemem(err);
        return EXIT_USAGE;
    }
    if (strlen(dsn) >= sizeof c->out.pg)
        return run_usage_error("--out pg: DSN too long (%s)", "max 2047 bytes");
    snprintf(c->out.pg, sizeof c->out.pg, "%s", dsn);
    return 0;
}

/* --out KIND=TARGET, repeatable: json=FILE, csv=FILE, html=FILE, pg=DSN, pg. */
static int parse_out(struct run_args *c, const char *v)
{
    static const char *const kinds[] = {"json=", "csv=", "html="};
    const char **slots[] = {&c->out.json, &c->out.csv, &c->out.html};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(v, kinds[i], n) == 0) {
            if (!v[n])
                return run_usage_error("--out %s needs a file name", kinds[i]);
            *slots[i] = v + n;
            char kind[8];
            snprintf(kind, sizeof kind, "%.*s", (int)n - 1, kinds[i]);
            return check_writable(kind, v + n);
        }
    }
    if (strcmp(v, "pg") == 0)
        return parse_pg_out(c, getenv("DATABASE_URL"));
    if (strncmp(v, "pg=", 3) == 0)
        return parse_pg_out(c, v + 3);
    return run_usage_error("--out: unknown output '%s' (valid: json=FILE, csv=FILE, html=FILE, pg=DSN, pg)", v);
}

/* Splits "--key=value" / "--key value". */
static const char *option_value(int argc, char **argv, int *i, char *key, size_t klen)
{
    const char *a = argv[*i] + 2, *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    snprintf(key, klen, "%.*s", (int)n, a);
    if (eq)
        return eq + 1;
    return *i + 1 < argc ? argv[++*i] : NULL;
}

static const char *const run_flags[] = {"vus", "duration", "iterations", "executor", "threads",
                                        "target", "graceful-stop", "max-body", "lua-memory", "max-names",
                                        "progress", "ca", "http-engine",
                                        "run-id", "segment", "start-at", "data", "out-data", "workers", "via",
                                        "lambda-endpoint", NULL};
/* Flags of `tide run` itself, not scenario options. */
static bool run_own_flag(const char *key)
{
    return strcmp(key, "env") == 0 || strcmp(key, "out") == 0 || strcmp(key, "progress") == 0 ||
           strcmp(key, "run-id") == 0 || strcmp(key, "segment") == 0 || strcmp(key, "start-at") == 0 ||
           strcmp(key, "data") == 0 || strcmp(key, "out-data") == 0 || strcmp(key, "workers") == 0 ||
           strcmp(key, "via") == 0 || strcmp(key, "lambda-endpoint") == 0;
}

/* --segment I/N: share I of N, 1 <= I <= N (plain decimal numbers). */
static int parse_segment(struct run_args *a, const char *v)
{
    unsigned long i = 0, n = 0;
    int used = -1;
    if (sscanf(v, "%lu/%lu%n", &i, &n, &used) != 2 || used != (int)strlen(v) || strspn(v, "0123456789/") != strlen(v) ||
        i < 1 || n < 1 || i > n || n > MAX_SEGMENTS)
        return run_usage_error("--segment: expected I/N with 1 <= I <= N <= 1000000, as in 2/4 (got '%s')", v);
    a->segment = (unsigned)i - 1;
    a->segments = (unsigned)n;
    return 0;
}

/* --workers N (1..1000), --via local, ssh:HOST[,HOST...] or lambda:FUNCTION[:QUALIFIER],
 * --lambda-endpoint URL. */
static int parse_workers(struct run_args *a, const char *key, const char *v)
{
    char err[600];
    if (key[0] == 'l') {
        if (!lambda_endpoint_valid(v, err, sizeof err))
            return run_usage_error("%s", err);
        a->lambda_endpoint = v;
        return 0;
    }
    if (key[0] == 'v' && strncmp(v, "lambda:", 7) == 0) {
        struct lambda_target t;
        if (!lambda_via_parse(v, &t, err, sizeof err))
            return run_usage_error("%s", err);
        a->via = v;
        return 0;
    }
    if (key[0] == 'v') {
        bool ssh = strncmp(v, "ssh:", 4) == 0;
        if (ssh && (!v[4] || strstr(v, ",,") || v[strlen(v) - 1] == ',' || v[4] == ',' || strstr(v, ",-") ||
                    v[4] == '-' || strpbrk(v, " \t\n'\"\\;&|$`")))
            return run_usage_error("--via: expected ssh:HOST[,HOST...] with plain host names (got '%s')", v);
        if (!ssh && strcmp(v, "local") != 0)
            return run_usage_error("--via: expected local, ssh:HOST[,HOST...] or lambda:FUNCTION[:QUALIFIER] "
                                   "(got '%s')", v);
        a->via = v;
        return 0;
    }
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || end == v || *v == '-' || n < 1 || n > MAX_WORKERS)
        return run_usage_error("--workers: expected a number of worker processes from 1 to 1000 (got '%s')", v);
    a->workers = (unsigned)n;
    return 0;
}

/* "2026-12-04T22:30:00Z", "...:00.250Z", "...:00+00:00": a UTC time; 0 if not one. */
static double rfc3339_utc(const char *v)
{
    struct tm tm = {0};
    int used = 0;
    if (sscanf(v, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &used) != 6 || used != 19 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return 0;
    const char *p = v + used;
    double frac = 0;
    if (*p == '.') {
        size_t n = strspn(p + 1, "0123456789");
        if (!n)
            return 0;
        frac = strtod(p, NULL);
        p += 1 + n;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return 0; /* UTC only: hosts in different zones must name the same instant */
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t > 0 ? (double)t + frac : 0;
}

/* --start-at TIME: RFC 3339 in UTC or Unix seconds (fractions allowed). */
static int parse_start_at(struct run_args *a, const char *v)
{
    double t = rfc3339_utc(v);
    if (!t && *v && strspn(v, "0123456789.") == strlen(v)) {
        char *end;
        t = strtod(v, &end);
        if (*end || !(t > 0 && t < 1e11))
            t = 0;
    }
    if (!t)
        return run_usage_error("--start-at: expected a UTC time as 2026-12-04T22:30:00Z or Unix "
                               "seconds (got '%s')", v);
    if (t < clock_wall_s() - START_AT_SLACK)
        return run_usage_error("--start-at: '%s' is in the past", v);
    a->start_at = t;
    a->start_at_text = v;
    return 0;
}

static int add_override(struct run_args *a, const char *flag, const char *key, const char *v)
{
    if (a->noverrides >= MAX_OVERRIDES)
        return run_usage_error("too many options (%s)", flag);
    snprintf(a->overrides[a->noverrides].key, sizeof a->overrides[0].key, "%s", key);
    a->overrides[a->noverrides++].value = v;
    return 0;
}

/* Options that take no value: --no-compression, --insecure. */
static bool switch_flag(struct run_args *a, const char *flag, int *rc)
{
    if (strcmp(flag, "--no-compression") == 0)
        return *rc = add_override(a, flag, "compression", "false"), true;
    if (strcmp(flag, "--insecure") == 0)
        return *rc = add_override(a, flag, "insecure", "true"), true;
    return false;
}

static int parse_flag(struct run_args *a, int argc, char **argv, int *i)
{
    char key[64];
    const char *flag = argv[*i];
    int rc;
    if (strcmp(flag, "--quiet") == 0 || strcmp(flag, "-q") == 0)
        return a->out.quiet = true, 0;
    if (strcmp(flag, "--ssh-copy") == 0)
        return a->ssh_copy = true, 0;
    if (switch_flag(a, flag, &rc))
        return rc;
    const char *v = option_value(argc, argv, i, key, sizeof key);
    bool known = run_own_flag(key);
    for (int k = 0; run_flags[k] && !known; k++)
        known = strcmp(key, run_flags[k]) == 0;
    if (!known)
        return run_usage_error("unknown option '%s' (valid: --vus --duration --iterations --executor "
                           "--graceful-stop --threads --target --env --max-body --lua-memory --max-names --out "
                           "--progress --no-compression --insecure --ca --http-engine "
                           "--run-id --segment --start-at --data --out-data --workers --via --lambda-endpoint --ssh-copy "
                           "--quiet)", flag);
    if (!v)
        return run_usage_error("--%s needs a value", key);
    if (strcmp(key, "out") == 0)
        return parse_out(a, v);
    if (strcmp(key, "run-id") == 0) {
        if (!*v || strlen(v) >= sizeof a->out.run_id || strpbrk(v, "/ \t\n"))
            return run_usage_error("--run-id: expected a short id without spaces or slashes (got '%s')", v);
        snprintf(a->out.run_id, sizeof a->out.run_id, "%s", v);
        return 0;
    }
    if (strcmp(key, "segment") == 0)
        return parse_segment(a, v);
    if (strcmp(key, "workers") == 0 || strcmp(key, "via") == 0 || strcmp(key, "lambda-endpoint") == 0)
        return parse_workers(a, key, v);
    if (strcmp(key, "start-at") == 0)
        return parse_start_at(a, v);
    if (strcmp(key, "data") == 0 || strcmp(key, "out-data") == 0) {
        if (!*v)
            return run_usage_error("--%s needs a file name", key);
        *(key[0] == 'd' ? &a->data : &a->out_data) = v;
        return key[0] == 'o' ? check_writable("data", v) : 0;
    }
    if (strcmp(key, "progress") == 0) {
        char *end;
        a->progress_every = strtod(v, &end);
        return *end || end == v || !(a->progress_every >= 0 && a->progress_every <= 86400)
            ? run_usage_error("--progress: expected seconds between lines, from 0 to 86400 (got '%s')", v) : 0;
    }
    if (strcmp(key, "env") == 0) {
        if (!strchr(v, '=') || v[0] == '=')
            return run_usage_error("--env: expected KEY=VALUE, got '%s'", v);
        if (a->nenv >= MAX_CLI_ENV)
            return run_usage_error("--env: too many (%s)", v);
        a->env[a->nenv++] = (char *)v;
        return 0;
    }
    /* checked now so a bad value is named before the scenario even loads;
     * applied again after the scenario's own options */
    struct options scratch;
    char err[OPTIONS_ERR];
    options_init(&scratch);
    if (!options_set_cli(&scratch, key, v, err))
        return run_usage_error("%s", err);
    return add_override(a, flag, key, v);
}

/* What only some of run, setup and teardown take. */
static int check_mode(const struct run_args *a)
{
    static const char *const names[] = {"run", "setup", "teardown"};
    const char *cmd = names[a->mode];
    if (a->out_data && a->mode != MODE_SETUP)
        return run_usage_error("--out-data is for tide setup, not tide %s", cmd);
    if (a->data && a->mode == MODE_SETUP)
        return run_usage_error("--data is for tide run and tide teardown, not tide %s", cmd);
    if (!a->data && a->mode == MODE_TEARDOWN)
        return run_usage_error("tide %s needs --data FILE (what tide setup wrote)", cmd);
    if (a->mode != MODE_RUN && (a->segments || a->workers || a->start_at > 0 || a->out.json || a->out.csv || a->out.html ||
                                a->out.pg[0]))
        return run_usage_error("--segment, --start-at and --out are for tide run, not tide %s", cmd);
    return 0;
}

int run_args_parse(struct run_args *a, enum run_mode mode, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->mode = mode;
    a->progress_every = 10;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a->help = true;
            return 0;
        }
        if (strncmp(argv[i], "-", 1) != 0) {
            if (a->scenario)
                return run_usage_error("unexpected argument '%s' (one scenario per run)", argv[i]);
            a->scenario = argv[i];
            continue;
        }
        int rc = parse_flag(a, argc, argv, &i);
        if (rc)
            return rc;
    }
    if (!a->scenario)
        return run_usage_error("%s", "which scenario? usage: tide run SCENARIO [options]");
    int rc = check_mode(a);
    if (!rc && a->via && !a->workers)
        return run_usage_error("--via %s needs --workers N", a->via);
    if (!rc && a->ssh_copy && !(a->via && strncmp(a->via, "ssh:", 4) == 0))
        return run_usage_error("--ssh-copy copies tide to ssh hosts: it needs --via ssh:HOST[,HOST...] (got --via %s)",
                               a->via ? a->via : "(none)");
    if (!rc && a->lambda_endpoint && !(a->via && strncmp(a->via, "lambda:", 7) == 0))
        return run_usage_error("--lambda-endpoint is where Lambda is invoked: it needs --via lambda:FUNCTION "
                               "(got --via %s)", a->via ? a->via : "(none)");
    if (!rc && a->workers && a->segments)
        return run_usage_error("--workers splits the load itself: leave out --segment (got --workers %s)",
                               "with --segment");
    if (!rc && a->workers && a->out.csv)
        return run_usage_error("--out csv=%s: not yet with --workers (json, html and pg are)", a->out.csv);
    return rc;
}

int run_args_apply(const struct run_args *a, struct options *o)
{
    char err[OPTIONS_ERR];
    o->segment = a->segment;
    o->segments = a->segments;
    for (int i = 0; i < a->noverrides; i++)
        if (!options_set_cli(o, a->overrides[i].key, a->overrides[i].value, err))
            return run_usage_error("%s", err);
    return 0;
}
