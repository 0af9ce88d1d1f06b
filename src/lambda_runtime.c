/* `tide lambda`: the AWS Lambda custom runtime (what the zip's bootstrap
 * runs). It asks the Runtime API for the next invocation, runs its event as
 * a worker job in this process (worker_run_job, as `tide worker` does),
 * posts the results document as the response, or an error with one of a
 * few documented errorTypes, and asks again (README, "AWS Lambda"). */
#include "lambda_runtime.h"
#include "clock.h"
#include "lambda_invoke.h"
#include "buf.h"
#include "exitcodes.h"
#include "job.h"
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define API_VERSION "/2018-06-01/runtime"
#define MAX_RESPONSE 6291456u       /* Lambda's limit on a synchronous response, bytes */
#define MAX_EVENT (64u << 20)       /* far above Lambda's own 6 MB request limit */
#define MAX_MESSAGE 4000            /* errorMessage: the tail of what the job said */
#define POST_TIMEOUT 60L            /* s, for posting a response or an error */
#define CONNECT_TIMEOUT 10L
/* How far ahead of the deadline the load stops: 10 % of the time left when
 * the invocation arrives, at least 1 s and at most 10 s; running
 * iterations are cut half-way through that margin, the other half is for
 * writing and posting the results. */
#define MARGIN_SHARE 0.10
#define MARGIN_MIN 1.0
#define MARGIN_MAX LAMBDA_STOP_MARGIN_MAX

/* The errorTypes an invocation can fail with (README lists them). */
#define ERR_BAD_JOB "Tide.BadJob"
#define ERR_SCRIPT "Tide.ScriptError"
#define ERR_TOO_LARGE "Tide.ResultsTooLarge"
#define ERR_NO_RESULTS "Tide.NoResults"
#define ERR_INIT "Tide.InitError"

struct runtime {
    char base[320];             /* http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime */
    CURL *curl;                 /* one handle, its connection kept between calls */
    const struct signals *sig;
};

struct invocation {
    char id[128];               /* Lambda-Runtime-Aws-Request-Id */
    double deadline;            /* Lambda-Runtime-Deadline-Ms, in wall-clock s; 0: none */
    bool bad_id;                /* an id that cannot go in a URL path */
    struct buf event;
    bool too_big;
};

/* ---------------------------------------------------------------- JSON */

/* The length of the valid UTF-8 sequence at s, or 0 (a message may quote
 * any bytes a scenario printed; the Runtime API wants valid JSON). */
static size_t utf8_length(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    /* RFC 3629: no overlong form, no surrogate, nothing past U+10FFFF */
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    if (n && (s[1] < lo || s[1] > hi))
        return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    return n;
}

static void json_string(struct buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c >= 0x80) {
            size_t n = utf8_length((const unsigned char *)s);
            if (n)
                buf_append(b, s, n), s += n - 1;
            else
                buf_append(b, "\\ufffd", 6); /* not UTF-8: the replacement character */
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            buf_append(b, esc, 2);
        } else if (c == '\n') {
            buf_append(b, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_append(b, esc, 6);
        } else {
            buf_append(b, s, 1);
        }
    }
    buf_append(b, "\"", 1);
}

/* {"errorMessage": message, "errorType": type}; NULL when out of memory. */
static char *error_document(const char *type, const char *message, size_t *len)
{
    struct buf b = {0};
    buf_append(&b, "{\"errorMessage\":", 16);
    json_string(&b, message);
    buf_append(&b, ",\"errorType\":", 13);
    json_string(&b, type);
    buf_append(&b, "}", 1);
    if (!buf_append(&b, "", 1)) { /* the terminating NUL, not counted */
        buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    return b.data;
}

/* ------------------------------------------------------------ HTTP calls */

static size_t collect_body(char *p, size_t size, size_t n, void *ud)
{
    struct invocation *inv = ud;
    size_t total = size * n;
    if (inv->event.len + total > MAX_EVENT || !buf_append(&inv->event, p, total)) {
        inv->too_big = true;
        return 0;
    }
    return total;
}

static size_t drop_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

static bool header_is(const char *line, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return true;
}

static size_t invocation_header(char *line, size_t size, size_t n, void *ud)
{
    struct invocation *inv = ud;
    const char *v;
    size_t vlen;
    if (header_is(line, n, "Lambda-Runtime-Aws-Request-Id", &v, &vlen)) {
        inv->bad_id = vlen == 0 || vlen >= sizeof inv->id || strspn(v, "abcdefghijklmnopqrstuvwxyz"
                                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") < vlen;
        snprintf(inv->id, sizeof inv->id, "%.*s", (int)(vlen < sizeof inv->id ? vlen : sizeof inv->id - 1), v);
    } else if (header_is(line, n, "Lambda-Runtime-Deadline-Ms", &v, &vlen) && vlen < 32) {
        char ms[32];
        snprintf(ms, sizeof ms, "%.*s", (int)vlen, v);
        char *end;
        long long t = strtoll(ms, &end, 10);
        inv->deadline = end != ms && *end == '\0' && t > 0 ? (double)t / 1e3 : 0;
    }
    return size * n;
}

/* The long poll has no timeout, yet Ctrl-C/SIGTERM ends it: libcurl calls
 * this about once a second while it waits. */
static int stop_on_interrupt(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    const struct runtime *rt = ud;
    return rt->sig->interrupts() > 0;
}

static void set_url(struct runtime *rt, const char *path)
{
    char url[600];
    snprintf(url, sizeof url, "%s%s", rt->base, path);
    curl_easy_reset(rt->curl);
    curl_easy_setopt(rt->curl, CURLOPT_URL, url);
    curl_easy_setopt(rt->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT);
    curl_easy_setopt(rt->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(rt->curl, CURLOPT_PROXY, ""); /* the Runtime API is local: never through a proxy */
}

/* POSTs body to BASE/path; the status, or -1 (said on stderr). */
static long post(struct runtime *rt, const char *path, const char *body, size_t len, const char *error_type)
{
    set_url(rt, path);
    char type_header[128];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for a large document */
    if (error_type) {
        snprintf(type_header, sizeof type_header, "Lambda-Runtime-Function-Error-Type: %s", error_type);
        h = curl_slist_append(h, type_header);
    }
    curl_easy_setopt(rt->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(rt->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(rt->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(rt->curl, CURLOPT_WRITEFUNCTION, drop_body);
    curl_easy_setopt(rt->curl, CURLOPT_TIMEOUT, POST_TIMEOUT);
    CURLcode rc = curl_easy_perform(rt->curl);
    long status = -1;
    curl_easy_getinfo(rt->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "tide lambda: POST %s%s failed: %s\n", rt->base, path, curl_easy_strerror(rc));
        return -1;
    }
    if (status != 202)
        fprintf(stderr, "tide lambda: POST %s%s answered %ld (expected 202)\n", rt->base, path, status);
    return status;
}

static long post_error(struct runtime *rt, const char *path, const char *type, const char *message)
{
    size_t len = 0;
    char *doc = error_document(type, message, &len);
    fprintf(stderr, "tide lambda: %s: %s\n", type, message);
    long status = doc ? post(rt, path, doc, len, type) : -1;
    free(doc);
    return status;
}

enum next { NEXT_OK, NEXT_INTERRUPTED, NEXT_GONE };

/* GET BASE/invocation/next: waits as long as it takes for an invocation. */
static enum next next_invocation(struct runtime *rt, struct invocation *inv)
{
    set_url(rt, "/invocation/next");
    curl_easy_setopt(rt->curl, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(rt->curl, CURLOPT_WRITEDATA, inv);
    curl_easy_setopt(rt->curl, CURLOPT_HEADERFUNCTION, invocation_header);
    curl_easy_setopt(rt->curl, CURLOPT_HEADERDATA, inv);
    curl_easy_setopt(rt->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(rt->curl, CURLOPT_XFERINFOFUNCTION, stop_on_interrupt);
    curl_easy_setopt(rt->curl, CURLOPT_XFERINFODATA, rt);
    CURLcode rc = curl_easy_perform(rt->curl);
    long status = 0;
    curl_easy_getinfo(rt->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rt->sig->interrupts() > 0)
        return NEXT_INTERRUPTED;
    if (rc == CURLE_WRITE_ERROR && inv->too_big && inv->id[0])
        return NEXT_OK; /* answered below with an error */
    if (rc != CURLE_OK) {
        fprintf(stderr, "tide lambda: GET %s/invocation/next failed: %s (is AWS_LAMBDA_RUNTIME_API right?)\n",
                rt->base, curl_easy_strerror(rc));
        return NEXT_GONE;
    }
    if (status != 200) {
        fprintf(stderr, "tide lambda: GET %s/invocation/next answered %ld: stopping\n", rt->base, status);
        return NEXT_GONE;
    }
    return NEXT_OK;
}

/* ------------------------------------------------- the job's own stderr */

/* What a job says on stderr goes to a temporary file too, so that an
 * error's errorMessage can quote it; it is copied on to the real stderr
 * (the function's log) afterwards. */
struct capture {
    FILE *file;
    int saved;
};

static bool capture_begin(struct capture *c)
{
    fflush(stderr);
    c->file = tmpfile(); /* unlinked already: nothing left behind */
    c->saved = c->file ? dup(2) : -1;
    if (c->saved >= 0 && dup2(fileno(c->file), 2) >= 0)
        return true;
    if (c->saved >= 0)
        close(c->saved);
    if (c->file)
        fclose(c->file);
    c->file = NULL;
    return false;
}

/* Restores stderr, copies the captured text to it; its last lines into tail. */
static void capture_end(struct capture *c, char *tail, size_t len)
{
    tail[0] = '\0';
    if (!c->file)
        return;
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    long size = ftell(c->file);
    char chunk[8192];
    size_t n;
    rewind(c->file);
    while ((n = fread(chunk, 1, sizeof chunk, c->file)) > 0)
        if (fwrite(chunk, 1, n, stderr) != n)
            break;
    long from = size > (long)len - 1 ? size - ((long)len - 1) : 0;
    if (fseek(c->file, from, SEEK_SET) == 0) {
        n = fread(tail, 1, len - 1, c->file);
        tail[n] = '\0';
    }
    fclose(c->file);
    char *start = from > 0 ? strchr(tail, '\n') : NULL; /* drop a cut first line */
    if (start && start[1])
        memmove(tail, start + 1, strlen(start + 1) + 1);
    for (size_t k = strlen(tail); k > 0 && (tail[k - 1] == '\n' || tail[k - 1] == '\r'); k--)
        tail[k - 1] = '\0';
}

/* ------------------------------------------------------ one invocation */

static void deadline_watch(const struct invocation *inv, struct job_ctl *ctl)
{
    *ctl = (struct job_ctl){0};
    if (inv->deadline <= 0)
        return;
    double left = inv->deadline - clock_wall_s();
    double margin = left * MARGIN_SHARE;
    margin = margin < MARGIN_MIN ? MARGIN_MIN : margin > MARGIN_MAX ? MARGIN_MAX : margin;
    ctl->stop_at = inv->deadline - margin;
    ctl->cut_at = inv->deadline - margin / 2;
}

/* Which errorType a job's exit code (and document) make; NULL: a response. */
static const char *job_error_type(const struct job_result *res)
{
    if (res->rc == EXIT_USAGE)
        return ERR_BAD_JOB;
    if (res->rc == EXIT_SCRIPT)
        return ERR_SCRIPT;
    bool ran = res->rc == EXIT_PASS || res->rc == EXIT_FAILED || res->rc == EXIT_INTERRUPTED;
    if (!ran || !res->doc)
        return ERR_NO_RESULTS;
    if (res->len > MAX_RESPONSE)
        return ERR_TOO_LARGE;
    return NULL;
}

static void answer(struct runtime *rt, const struct invocation *inv, const struct job_result *res, const char *said)
{
    char path[200], message[MAX_MESSAGE + 200];
    const char *type = job_error_type(res);
    if (!type) {
        snprintf(path, sizeof path, "/invocation/%s/response", inv->id);
        post(rt, path, res->doc, res->len, NULL);
        return;
    }
    if (strcmp(type, ERR_TOO_LARGE) == 0)
        snprintf(message, sizeof message, "the results document is %zu bytes, over Lambda's %u-byte response "
                 "limit: fewer request names, tags or metrics make it smaller", res->len, MAX_RESPONSE);
    else if (said[0])
        snprintf(message, sizeof message, "%s", said);
    else
        snprintf(message, sizeof message, "the job ended with exit code %d and no results document", res->rc);
    snprintf(path, sizeof path, "/invocation/%s/error", inv->id);
    post_error(rt, path, type, message);
}

static void run_invocation(struct runtime *rt, const struct invocation *inv)
{
    struct job_ctl ctl;
    deadline_watch(inv, &ctl);
    char said[MAX_MESSAGE + 1] = "";
    struct job_result res = {.who = "tide lambda", .rc = EXIT_USAGE};
    if (inv->too_big) {
        snprintf(said, sizeof said, "tide lambda: the event is over %u bytes: not a job", MAX_EVENT);
    } else {
        struct capture cap;
        bool captured = capture_begin(&cap);
        double t0 = clock_wall_s();
        worker_run_job(inv->event.data ? inv->event.data : "", inv->event.len, rt->sig, &ctl, &res);
        if (captured)
            capture_end(&cap, said, sizeof said);
        fprintf(stderr, "tide lambda: invocation %s: exit %d after %.1fs, results %zu bytes\n", inv->id, res.rc,
                clock_wall_s() - t0, res.doc ? res.len : 0);
    }
    answer(rt, inv, &res, said);
    free(res.doc);
}

/* -------------------------------------------------------------- the loop */

/* AWS_LAMBDA_RUNTIME_API: host:port, as Lambda sets it. */
static bool runtime_api(struct runtime *rt)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api || !*api) {
        fprintf(stderr, "tide lambda: AWS_LAMBDA_RUNTIME_API is not set: tide lambda runs as an AWS Lambda "
                        "function's bootstrap (README, \"AWS Lambda\")\n");
        return false;
    }
    size_t n = strlen(api);
    if (n > 255 || strspn(api, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != n ||
        !strchr(api, ':')) {
        fprintf(stderr, "tide lambda: AWS_LAMBDA_RUNTIME_API '%.255s' is not HOST:PORT\n", api);
        return false;
    }
    snprintf(rt->base, sizeof rt->base, "http://%s%s", api, API_VERSION);
    return true;
}

/* What must hold before the first invocation; an init error posted when
 * the Runtime API is known. 0 or EXIT_USAGE. */
static int runtime_init(struct runtime *rt, int argc, char **argv)
{
    if (!runtime_api(rt))
        return EXIT_USAGE;
    if (!(rt->curl = curl_easy_init())) {
        fprintf(stderr, "tide lambda: cannot make a libcurl handle (out of memory?)\n");
        return EXIT_USAGE;
    }
    char why[600] = "", dir[4096];
    const char *tmp = getenv("TMPDIR");
    tmp = tmp && *tmp && strlen(tmp) < 4000 ? tmp : "/tmp";
    snprintf(dir, sizeof dir, "%s/tide-lambda-XXXXXX", tmp);
    if (argc > 0)
        snprintf(why, sizeof why, "tide lambda takes no arguments (got '%.200s'): the bootstrap runs "
                 "'tide lambda'", argv[0]);
    else if (!mkdtemp(dir))
        snprintf(why, sizeof why, "%.300s is not writable (%s): each job needs a temporary directory there",
                 tmp, strerror(errno));
    else
        rmdir(dir);
    if (!why[0])
        return 0;
    post_error(rt, "/init/error", ERR_INIT, why);
    return EXIT_USAGE;
}

int cmd_lambda(int argc, char **argv, const struct signals *sig)
{
    struct runtime rt = {.sig = sig};
    int rc = runtime_init(&rt, argc, argv);
    while (!rc) {
        struct invocation inv = {0};
        enum next got = next_invocation(&rt, &inv);
        if (got == NEXT_OK && (!inv.id[0] || inv.bad_id))
            fprintf(stderr, "tide lambda: an invocation without a usable Lambda-Runtime-Aws-Request-Id "
                            "('%s'): it cannot be answered\n", inv.id);
        else if (got == NEXT_OK)
            run_invocation(&rt, &inv);
        buf_free(&inv.event);
        if (got == NEXT_GONE)
            rc = EXIT_USAGE;
        else if (got == NEXT_INTERRUPTED || sig->interrupts() > 0)
            rc = EXIT_INTERRUPTED; /* a job cut by SIGTERM still had its results posted */
    }
    if (rt.curl)
        curl_easy_cleanup(rt.curl);
    return rc;
}
