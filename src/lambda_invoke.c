/* The coordinator's side of --via lambda:FUNCTION[:QUALIFIER]: the Invoke
 * call (POST /2015-03-31/functions/FUNCTION/invocations), signed by libcurl
 * (CURLOPT_AWS_SIGV4, which also signs the x-amz-* headers added here, the
 * session token among them), its answer judged: a results document, a
 * function error, an HTTP error, a throttle (retried), a timeout. */
#include "lambda_invoke.h"
#include "redact.h"
#include "clock.h"
#include "xmalloc.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int luaopen_cjson(lua_State *L);

#define MAX_PAYLOAD (64u << 20)     /* Lambda's own limit is 6 MB; a local endpoint may differ */
#define FIRST_DELAY 0.2             /* seconds before the first retry; doubled each time */
#define MAX_DELAY 2.0
#define MESSAGE_MAX 300             /* a service's message, shown on one line */
#define WORKER_FAILED 5

static const char NAME_CHARS[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

bool lambda_via_parse(const char *via, struct lambda_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    bool prefix = strncmp(via, "lambda:", 7) == 0;
    const char *fn = prefix ? via + 7 : "", *colon = strchr(fn, ':');
    size_t nf = colon ? (size_t)(colon - fn) : strlen(fn);
    const char *q = colon ? colon + 1 : "";
    size_t nq = strlen(q);
    if (!prefix || nf < 1 || nf > 64 || strspn(fn, NAME_CHARS) != nf ||
        (colon && (nq < 1 || nq > 128 || (q[0] == '$' ? strcmp(q, "$LATEST") != 0 : strspn(q, NAME_CHARS) != nq)))) {
        snprintf(err, errlen, "--via: expected lambda:FUNCTION[:QUALIFIER], FUNCTION a function's name "
                              "(letters, digits, - and _, at most 64), QUALIFIER a version, $LATEST or an alias "
                              "(got '%s')", via);
        return false;
    }
    snprintf(t->function, sizeof t->function, "%.*s", (int)nf, fn);
    snprintf(t->qualifier, sizeof t->qualifier, "%s", q);
    return true;
}

bool lambda_endpoint_valid(const char *url, char *err, size_t errlen)
{
    bool https = strncmp(url, "https://", 8) == 0;
    bool scheme = https || strncmp(url, "http://", 7) == 0;
    const char *host = scheme ? url + (https ? 8 : 7) : ""; /* only past a prefix it has */
    bool clean = true;
    for (const char *c = url; *c; c++)
        clean = clean && (unsigned char)*c > ' ' && *c != 0x7f;
    if (scheme && clean && *host && *host != '/' && !strpbrk(url, "?#") && strlen(url) < 2000)
        return true;
    snprintf(err, errlen, "--lambda-endpoint: expected an http:// or https:// URL without query "
                          "(got '%s')", url);
    return false;
}

static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

bool lambda_target_load(const char *via, const char *endpoint, struct lambda_target *t, char *err, size_t errlen)
{
    if (!lambda_via_parse(via, t, err, errlen))
        return false;
    if (endpoint && !lambda_endpoint_valid(endpoint, err, errlen))
        return false;
    t->key = env_value("AWS_ACCESS_KEY_ID");
    t->secret = env_value("AWS_SECRET_ACCESS_KEY");
    t->token = env_value("AWS_SESSION_TOKEN");
    const char *region = env_value("AWS_REGION");
    const char *from = "AWS_REGION";
    if (!region)
        region = env_value("AWS_DEFAULT_REGION"), from = "AWS_DEFAULT_REGION";
    const char *missing = !t->key ? "AWS_ACCESS_KEY_ID" : !t->secret ? "AWS_SECRET_ACCESS_KEY" : NULL;
    if (missing) {
        snprintf(err, errlen, "--via %s: %s is not set (the credentials Lambda's Invoke is signed with "
                              "come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)", via,
                 missing);
        return false;
    }
    if (!region) {
        snprintf(err, errlen, "--via %s: the region is not set: set AWS_REGION (or AWS_DEFAULT_REGION), "
                              "as in AWS_REGION=eu-west-1", via);
        return false;
    }
    if (strlen(region) >= sizeof t->region || strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region)) {
        snprintf(err, errlen, "--via %s: %s='%s' is not a region name (as in eu-west-1)", via, from, region);
        return false;
    }
    if (strpbrk(t->key, ":\r\n") || strpbrk(t->secret, "\r\n") || (t->token && strpbrk(t->token, "\r\n"))) {
        snprintf(err, errlen, "--via %s: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN holds a "
                              "line break (or the key id a colon)", via);
        return false;
    }
    snprintf(t->region, sizeof t->region, "%s", region);
    char base[2048];
    if (endpoint)
        snprintf(base, sizeof base, "%s", endpoint);
    else
        snprintf(base, sizeof base, "https://lambda.%s.amazonaws.com", region);
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    /* names and qualifiers hold only characters that need no escape but '$' */
    snprintf(t->url, sizeof t->url, "%s/2015-03-31/functions/%s/invocations%s%s%s", base, t->function,
             t->qualifier[0] ? "?Qualifier=" : "", t->qualifier[0] == '$' ? "%24" : "",
             t->qualifier + (t->qualifier[0] == '$'));
    return true;
}

/* What came back: the payload, and the headers that say how to read it. */
struct reply {
    char *body;
    size_t n, cap;
    bool too_big;
    char function_error[64];        /* X-Amz-Function-Error: the function failed */
    char error_type[128];           /* x-amzn-ErrorType: the service refused */
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct reply *r = ud;
    size_t n = size * nmemb;
    if (r->n + n + 1 > MAX_PAYLOAD) {
        r->too_big = true;
        return 0;
    }
    if (r->n + n + 1 > r->cap) {
        r->cap = r->cap ? r->cap : 65536;
        while (r->cap < r->n + n + 1)
            r->cap *= 2;
        r->body = xrealloc(r->body, r->cap);
    }
    memcpy(r->body + r->n, p, n);
    r->n += n;
    r->body[r->n] = '\0';
    return n;
}

/* "Name: value" into out when the line is that header (the value up to a ':'). */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1;
    size_t vn = n - k - 1;
    while (vn && (*v == ' ' || *v == '\t'))
        v++, vn--;
    size_t end = 0;
    while (end < vn && v[end] != ':' && v[end] != '\r' && v[end] != '\n')
        end++;
    snprintf(out, outlen, "%.*s", (int)end, v);
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct reply *r = ud;
    size_t n = size * nmemb;
    if (n > 5 && strncmp(p, "HTTP/", 5) == 0)
        r->function_error[0] = r->error_type[0] = '\0';   /* a new answer (after a 100 Continue) */
    header_value(p, n, "X-Amz-Function-Error", r->function_error, sizeof r->function_error);
    header_value(p, n, "x-amzn-ErrorType", r->error_type, sizeof r->error_type);
    return n;
}

/* Copies text to out with every occurrence of the secrets blanked. */
static void scrub(const char *text, const struct lambda_target *t, char *out, size_t len)
{
    char *once = malloc(len);
    if (!once) {
        snprintf(out, len, "(a message hidden: out of memory)");
        return;
    }
    redact_secret(text, t->secret, once, len);
    redact_secret(once, t->token, out, len);
    free(once);
}

/* A message to one short line: up to its first blank line (what follows in
 * AWS's answers is detail, such as the canonical request), spaces for line
 * breaks and control characters, capped. */
static void one_line(char *s)
{
    char *blank = strstr(s, "\n\n");
    if (blank)
        *blank = '\0';
    for (char *c = s; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            *c = ' ';
    if (strlen(s) > MESSAGE_MAX)
        strcpy(s + MESSAGE_MAX - 3, "...");
}

/* Prints a line on stderr, secrets blanked: the coordinator shows it with the worker's number. */
static void say(const struct lambda_target *t, const char *text)
{
    char clean[2048];
    scrub(text, t, clean, sizeof clean);
    fprintf(stderr, "%s\n", clean);
}

/* Fields of a JSON object (the first found of each pair of names), as one-line text. */
static void json_fields(const char *text, size_t n, const char *const names[4], char *a, char *b, size_t len)
{
    a[0] = b[0] = '\0';
    lua_State *L = luaL_newstate();
    if (!L)
        return;
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, text, n);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        char *outs[2] = {a, b};
        for (int i = 0; i < 4; i++) {
            char *o = outs[i / 2];
            if (o[0] || !names[i])
                continue;
            lua_getfield(L, -1, names[i]);
            if (lua_type(L, -1) == LUA_TSTRING)
                snprintf(o, len, "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_close(L);
}

/* The answer's message: its JSON's message, else its text. */
static void service_message(const struct reply *r, char *type, char *msg, size_t len)
{
    static const char *const names[4] = {"__type", "Type", "message", "Message"};
    char jtype[128];
    json_fields(r->body ? r->body : "", r->n, names, jtype, msg, len);
    if (!type[0]) {
        const char *hash = strrchr(jtype, '#');
        snprintf(type, 128, "%s", hash ? hash + 1 : jtype);
    }
    if (!msg[0])
        snprintf(msg, len, "%.*s", (int)(r->n < len ? r->n : len - 1), r->body ? r->body : "");
    one_line(msg);
}

static void pause_for(double seconds)
{
    double until = clock_wall_s() + seconds;
    for (double left = seconds; left > 0; left = until - clock_wall_s()) {
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Retry k (1-based): FIRST_DELAY doubled each time, capped, times a random
 * factor in [0.5, 1) so that N throttled workers do not come back together. */
static double backoff(int k, uint64_t *seed)
{
    double base = FIRST_DELAY;
    for (int i = 1; i < k && base < MAX_DELAY; i++)
        base *= 2;
    base = base < MAX_DELAY ? base : MAX_DELAY;
    *seed ^= *seed << 13, *seed ^= *seed >> 7, *seed ^= *seed << 17;
    return base * (0.5 + 0.5 * (double)(*seed >> 11) / (double)(1ull << 53));
}

static CURL *invoke_handle(const struct lambda_target *t, const char *job, size_t len, double timeout,
                           struct curl_slist **headers, struct reply *r, char *errbuf)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char sigv4[128], token[8192];
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:lambda", t->region);
    *headers = curl_slist_append(*headers, "X-Amz-Invocation-Type: RequestResponse");
    *headers = curl_slist_append(*headers, "Content-Type: application/json");
    /* no "Expect:" to turn off 100-continue (libcurl adds it only past 1 MB):
     * libcurl 7.88 would sign that empty header, which is never sent */
    if (t->token) {
        snprintf(token, sizeof token, "X-Amz-Security-Token: %s", t->token);
        *headers = curl_slist_append(*headers, token);
    }
    curl_easy_setopt(h, CURLOPT_URL, t->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, job);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, t->key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, t->secret);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tide/" TIDE_VERSION);
    return h;
}

/* Lambda's throttles: 429, and 5xx answers whose type says throttling (EC2ThrottledException). */
static bool throttled(long status, const char *type)
{
    return status == 429 || (status >= 500 && (strstr(type, "Throttl") || strstr(type, "TooManyRequests")));
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return false;
        p += w, n -= (size_t)w;
    }
    return true;
}

/* A 200: the document, or the function's error. */
static int judge_payload(const struct lambda_target *t, const struct reply *r)
{
    char line[1200];
    if (r->function_error[0]) {
        static const char *const names[4] = {"errorType", NULL, "errorMessage", NULL};
        char type[256], msg[800];
        json_fields(r->body ? r->body : "", r->n, names, type, msg, sizeof msg);
        if (!msg[0] && !type[0])
            snprintf(msg, sizeof msg, "%.*s", (int)(r->n < 400 ? r->n : 400), r->body ? r->body : "");
        one_line(msg);
        snprintf(line, sizeof line, "function error (%s): %s%s%s", r->function_error, type, type[0] ? ": " : "",
                 msg[0] ? msg : "(no message)");
        say(t, line);
        return WORKER_FAILED;
    }
    size_t lead = 0;
    while (lead < r->n && strchr(" \t\r\n", r->body[lead]))
        lead++;
    if (lead == r->n || r->body[lead] != '{') {
        char msg[400];
        snprintf(msg, sizeof msg, "%.*s", (int)(r->n - lead < 200 ? r->n - lead : 200), r->body ? r->body + lead : "");
        one_line(msg);
        snprintf(line, sizeof line, "the function answered without a results document: '%s'", msg);
        say(t, line);
        return WORKER_FAILED;
    }
    if (!write_all(1, r->body + lead, r->n - lead)) {
        say(t, "the results document could not be handed to the coordinator");
        return WORKER_FAILED;
    }
    return 0;
}

/* One attempt's failure, as a line; true when it is a throttle worth another try. */
static bool describe_failure(CURLcode rc, long status, const struct reply *r, const char *errbuf, double timeout,
                             char *line, size_t len)
{
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(line, len, "timed out: no answer within %.0fs (the load's planned length and a margin); "
                            "the invocation may still be running in Lambda", timeout);
        return false;
    }
    if (rc == CURLE_WRITE_ERROR && r->too_big) {
        snprintf(line, len, "the answer is larger than %u MB", MAX_PAYLOAD >> 20);
        return false;
    }
    if (rc != CURLE_OK) {
        snprintf(line, len, "the invoke failed: %s%s%s", curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf);
        return false;
    }
    char type[128], msg[800];
    snprintf(type, sizeof type, "%s", r->error_type);
    service_message(r, type, msg, sizeof msg);
    snprintf(line, len, "HTTP %ld%s%s: %s", status, type[0] ? " " : "", type, msg[0] ? msg : "(no message)");
    return throttled(status, type);
}

int lambda_invoke(const struct lambda_target *t, const char *job, size_t len, double timeout, double retry_until)
{
    struct reply r = {0};
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE];
    CURL *h = invoke_handle(t, job, len, timeout, &headers, &r, errbuf);
    if (!h || !headers) {
        say(t, "the invoke failed: libcurl could not be set up");
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        return WORKER_FAILED;
    }
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(clock_wall_s() * 1e6);
    int rc = WORKER_FAILED;
    for (int attempt = 1;; attempt++) {
        errbuf[0] = '\0';
        r.n = 0, r.too_big = false, r.function_error[0] = r.error_type[0] = '\0';
        CURLcode cr = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cr == CURLE_OK && status == 200) {
            rc = judge_payload(t, &r);
            break;
        }
        char line[1400];
        bool again = describe_failure(cr, status, &r, errbuf, timeout, line, sizeof line);
        double delay = again ? backoff(attempt, &seed) : 0;
        if (!again || attempt >= LAMBDA_ATTEMPTS || clock_wall_s() + delay >= retry_until) {
            char last[1600];
            snprintf(last, sizeof last, "%s%s", line,
                     !again ? "" : attempt >= LAMBDA_ATTEMPTS ? " (throttled: gave up after the last attempt)"
                                                              : " (throttled: a later try would miss the load's common start)");
            say(t, last);
            break;
        }
        char note[1600];
        snprintf(note, sizeof note, "throttled: %s (attempt %d of %d; trying again in %.2fs)", line, attempt,
                 LAMBDA_ATTEMPTS, delay);
        say(t, note);
        pause_for(delay);
    }
    free(r.body);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return rc;
}
