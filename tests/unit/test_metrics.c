/* The metric registry (metrics.c): definitions, tag-set interning, the
 * four kinds of series, the name cap, and the merge the threads and
 * reports rely on. Values are read back through metrics_push, as the
 * summary and the results document read them. */
#include "check.h"
#include "metrics.h"
#include "once.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#define KEY(s) (s), sizeof(s) - 1

/* S(name, tags): the series of metric `name` whose tags are exactly `tags`. */
static const char *const finder =
    "function S(name, want)\n"
    "  local mt = M[name]\n"
    "  if not mt then return nil end\n"
    "  for _, s in ipairs(mt.series) do\n"
    "    local same = true\n"
    "    for k, v in pairs(want) do same = same and s.tags[k] == v end\n"
    "    for k, v in pairs(s.tags) do same = same and want[k] == v end\n"
    "    if same then return s end\n"
    "  end\n"
    "end\n"
    "function N(name) return M[name] and #M[name].series or 0 end\n";

static lua_State *probe(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, finder) != LUA_OK)
        abort();
    return L;
}

/* The number a Lua expression gives on m's pushed form (M); NaN on error. */
static double eval(lua_State *L, const struct metrics *m, const char *expr)
{
    metrics_push(L, m);
    lua_setglobal(L, "M");
    char chunk[512];
    snprintf(chunk, sizeof chunk, "return %s", expr);
    double v = NAN;
    if (luaL_dostring(L, chunk) == LUA_OK && lua_isnumber(L, -1))
        v = lua_tonumber(L, -1);
    else
        fprintf(stderr, "  %s: %s\n", expr, lua_tostring(L, -1));
    lua_settop(L, 0);
    return v;
}

#define EVAL_IS(L, m, expr, want) \
    do { \
        double got_ = eval((L), (m), (expr)); \
        if (!CHECK(got_ == (want))) \
            fprintf(stderr, "  %s = %.17g, want %.17g\n", (expr), got_, (double)(want)); \
    } while (0)

static void test_definitions(void)
{
    struct metrics *m = metrics_new();
    CHECK(metrics_find(m, "iterations") == M_ITERATIONS);
    CHECK(metrics_find(m, "http_req_duration") == M_HTTP_REQ_DURATION);
    CHECK(metrics_find(m, "iteration_start_delay") == M_ITERATION_START_DELAY);
    CHECK(metrics_find(m, "nope") == -1);
    int c = metrics_define(m, "logins", METRIC_COUNTER, CONTAINS_DEFAULT);
    CHECK(c >= M_BUILTIN_COUNT && metrics_find(m, "logins") == c);
    CHECK(metrics_define(m, "logins", METRIC_COUNTER, CONTAINS_DEFAULT) == c);
    CHECK(metrics_define(m, "logins", METRIC_TREND, CONTAINS_TIME) == -1);
    CHECK(metrics_define(m, "iterations", METRIC_GAUGE, CONTAINS_DEFAULT) == -1);
    CHECK(metrics_define(m, "iterations", METRIC_COUNTER, CONTAINS_DEFAULT) == M_ITERATIONS);
    int t = metrics_define(m, "queue_wait", METRIC_TREND, CONTAINS_TIME);
    CHECK(t == c + 1);
    metrics_free(m);
}

/* Equal keys, one id; different keys, different ids; many keys, all kept. */
static void test_tag_interning(void)
{
    struct metrics *m = metrics_new();
    int empty = metrics_tagset(m, "", 0);
    int a = metrics_tagset(m, KEY("name\x1f/a"));
    int b = metrics_tagset(m, KEY("method\x1fGET\x1ename\x1f/a"));
    CHECK(empty >= 0 && a >= 0 && b >= 0 && a != b && a != empty && b != empty);
    CHECK(metrics_tagset(m, "", 0) == empty);
    CHECK(metrics_tagset(m, KEY("name\x1f/a")) == a);
    CHECK(metrics_tagset(m, KEY("method\x1fGET\x1ename\x1f/a")) == b);
    /* a key is its bytes: a prefix is another key */
    int pre = metrics_tagset(m, KEY("name\x1f/"));
    CHECK(pre >= 0 && pre != a);
    /* thousands of keys: the table grows, every id stays distinct and stable */
    enum { N = 5000 };
    int *ids = malloc(N * sizeof *ids);
    char key[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "name\x1f/item/%d", i);
        ids[i] = metrics_tagset(m, key, (size_t)n);
    }
    bool stable = true, distinct = true;
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof key, "name\x1f/item/%d", i);
        stable &= metrics_tagset(m, key, (size_t)n) == ids[i];
        distinct &= ids[i] >= 0 && (i == 0 || ids[i] != ids[i - 1]) && ids[i] != a && ids[i] != b;
    }
    CHECK(stable && distinct);
    CHECK(metrics_tagset(m, KEY("name\x1f/a")) == a);
    free(ids);
    metrics_free(m);
}

/* Counters add, gauges keep the last value and their extremes, rates count
 * passes, trends record into a histogram; one series per tag set. */
static void test_series_kinds(void)
{
    struct metrics *m = metrics_new();
    lua_State *L = probe();
    int ta = metrics_tagset(m, KEY("name\x1f/a")), tb = metrics_tagset(m, KEY("name\x1f/b"));
    int g = metrics_define(m, "depth", METRIC_GAUGE, CONTAINS_DEFAULT);
    int r = metrics_define(m, "ok", METRIC_RATE, CONTAINS_DEFAULT);
    metrics_add(m, M_HTTP_REQS, ta, 1);
    metrics_add(m, M_HTTP_REQS, ta, 1);
    metrics_add(m, M_HTTP_REQS, tb, 1);
    metrics_add(m, M_DATA_RECEIVED, ta, 1500.5);
    metrics_add(m, g, ta, 5);
    metrics_add(m, g, ta, -2);
    metrics_add(m, g, ta, 3);
    for (int i = 0; i < 10; i++)
        metrics_add(m, r, tb, i % 4 == 0); /* 0, 4, 8 pass */
    metrics_add(m, M_HTTP_REQ_DURATION, ta, 1000);
    metrics_add(m, M_HTTP_REQ_DURATION, ta, 3000);
    metrics_add(m, M_HTTP_REQ_DURATION, ta, -5); /* below zero records 0 */
    metrics_add(m, -1, ta, 1);                   /* an undefined metric or tag set: ignored */
    metrics_add(m, M_HTTP_REQS, -1, 1);
    EVAL_IS(L, m, "S('http_reqs', {name = '/a'}).value", 2);
    EVAL_IS(L, m, "S('http_reqs', {name = '/a'}).count", 2);
    EVAL_IS(L, m, "S('http_reqs', {name = '/b'}).value", 1);
    EVAL_IS(L, m, "N('http_reqs')", 2);
    EVAL_IS(L, m, "S('data_received', {name = '/a'}).value", 1500.5);
    EVAL_IS(L, m, "S('depth', {name = '/a'}).value", 3);
    EVAL_IS(L, m, "S('depth', {name = '/a'}).min", -2);
    EVAL_IS(L, m, "S('depth', {name = '/a'}).max", 5);
    EVAL_IS(L, m, "S('ok', {name = '/b'}).passes", 3);
    EVAL_IS(L, m, "S('ok', {name = '/b'}).total", 10);
    EVAL_IS(L, m, "S('http_req_duration', {name = '/a'}).hist:count()", 3);
    EVAL_IS(L, m, "S('http_req_duration', {name = '/a'}).hist:min()", 0);
    EVAL_IS(L, m, "S('http_req_duration', {name = '/a'}).hist:max()", 3000);
    EVAL_IS(L, m, "S('http_req_duration', {name = '/a'}).hist:sum()", 4000);
    EVAL_IS(L, m, "N('iterations')", 0); /* no sample, no series */
    lua_close(L);
    metrics_free(m);
}

/* Each thread interns tag sets in its own order: the merge goes by key. */
static void test_merge(void)
{
    struct metrics *t1 = metrics_new(), *t2 = metrics_new(), *all = metrics_new();
    lua_State *L = probe();
    int a1 = metrics_tagset(t1, KEY("name\x1f/a")), b1 = metrics_tagset(t1, KEY("name\x1f/b"));
    int b2 = metrics_tagset(t2, KEY("name\x1f/b")), a2 = metrics_tagset(t2, KEY("name\x1f/a"));
    int c2 = metrics_tagset(t2, KEY("name\x1f/c"));
    CHECK(a1 != a2 && b1 != b2);
    int d1 = metrics_define(t1, "depth", METRIC_GAUGE, CONTAINS_DEFAULT);
    int k2 = metrics_define(t2, "logins", METRIC_COUNTER, CONTAINS_DEFAULT); /* only on thread 2 */
    int d2 = metrics_define(t2, "depth", METRIC_GAUGE, CONTAINS_DEFAULT);
    metrics_add(t1, M_HTTP_REQS, a1, 1);
    metrics_add(t1, M_HTTP_REQS, b1, 1);
    metrics_add(t2, M_HTTP_REQS, a2, 1);
    metrics_add(t2, M_HTTP_REQS, a2, 1);
    metrics_add(t2, M_HTTP_REQS, c2, 1);
    metrics_add(t1, M_HTTP_REQ_FAILED, a1, 1);
    metrics_add(t2, M_HTTP_REQ_FAILED, a2, 0);
    metrics_add(t1, M_HTTP_REQ_DURATION, a1, 100);
    metrics_add(t2, M_HTTP_REQ_DURATION, a2, 900);
    metrics_add(t2, M_HTTP_REQ_DURATION, a2, 50);
    metrics_add(t2, k2, b2, 4);
    /* the users' gauges add up over threads (each has its share) */
    metrics_add(t1, M_VUS, metrics_tagset(t1, "", 0), 3);
    metrics_add(t1, M_VUS, metrics_tagset(t1, "", 0), 2);
    metrics_add(t2, M_VUS, metrics_tagset(t2, "", 0), 4);
    /* a scenario's own gauge: the latest value set anywhere, the extremes of all */
    metrics_add(t1, d1, a1, 10);
    metrics_add(t1, d1, a1, 1);
    metrics_add(t2, d2, a2, 7);
    CHECK(metrics_merge(all, t1) && metrics_merge(all, t2));
    EVAL_IS(L, all, "S('http_reqs', {name = '/a'}).value", 3);
    EVAL_IS(L, all, "S('http_reqs', {name = '/b'}).value", 1);
    EVAL_IS(L, all, "S('http_reqs', {name = '/c'}).value", 1);
    EVAL_IS(L, all, "S('http_reqs', {name = '/a'}).count", 3);
    EVAL_IS(L, all, "S('http_req_failed', {name = '/a'}).passes", 1);
    EVAL_IS(L, all, "S('http_req_failed', {name = '/a'}).total", 2);
    EVAL_IS(L, all, "S('http_req_duration', {name = '/a'}).hist:count()", 3);
    EVAL_IS(L, all, "S('http_req_duration', {name = '/a'}).hist:min()", 50);
    EVAL_IS(L, all, "S('http_req_duration', {name = '/a'}).hist:max()", 900);
    EVAL_IS(L, all, "S('http_req_duration', {name = '/a'}).hist:sum()", 1050);
    EVAL_IS(L, all, "S('logins', {name = '/b'}).value", 4);
    EVAL_IS(L, all, "S('vus', {}).value", 6);
    EVAL_IS(L, all, "S('vus', {}).max", 7);
    EVAL_IS(L, all, "S('depth', {name = '/a'}).value", 7);
    EVAL_IS(L, all, "S('depth', {name = '/a'}).min", 1);
    EVAL_IS(L, all, "S('depth', {name = '/a'}).max", 10);

    /* merging is associative: (t1 + t2) equals t1 + (empty + t2) */
    struct metrics *again = metrics_new(), *part = metrics_new();
    CHECK(metrics_merge(part, t2) && metrics_merge(again, t1) && metrics_merge(again, part));
    EVAL_IS(L, again, "S('http_reqs', {name = '/a'}).value", 3);
    EVAL_IS(L, again, "S('http_req_duration', {name = '/a'}).hist:sum()", 1050);
    EVAL_IS(L, again, "S('logins', {name = '/b'}).value", 4);

    /* a name both define with different kinds cannot merge */
    struct metrics *clash = metrics_new();
    metrics_define(clash, "logins", METRIC_TREND, CONTAINS_TIME);
    CHECK(!metrics_merge(clash, t2));

    /* merge_custom: only what scenarios and modules defined */
    struct metrics *custom = metrics_new();
    CHECK(metrics_merge_custom(custom, t2));
    EVAL_IS(L, custom, "S('logins', {name = '/b'}).value", 4);
    EVAL_IS(L, custom, "N('http_reqs')", 0);
    EVAL_IS(L, custom, "N('vus')", 0);
    metrics_free(custom);
    metrics_free(clash);
    metrics_free(again);
    metrics_free(part);
    lua_close(L);
    metrics_free(t1);
    metrics_free(t2);
    metrics_free(all);
}

static void test_tagkey_merge(void)
{
    char out[64];
    size_t n = metrics_tagkey_merge(KEY("a\x1f" "1\x1e" "c\x1f" "3"), KEY("b\x1f" "2\x1e" "c\x1f" "9"), out, sizeof out);
    CHECK(n == sizeof("a\x1f" "1\x1e" "b\x1f" "2\x1e" "c\x1f" "9") - 1 &&
          memcmp(out, "a\x1f" "1\x1e" "b\x1f" "2\x1e" "c\x1f" "9", n) == 0);
    n = metrics_tagkey_merge(KEY("a\x1f" "1"), "", 0, out, sizeof out);
    CHECK(n == 3 && memcmp(out, "a\x1f" "1", 3) == 0);
    CHECK(metrics_tagkey_merge("", 0, "", 0, out, sizeof out) == 0);
    CHECK(metrics_tagkey_merge(KEY("a\x1f" "1"), KEY("b\x1f" "2"), out, 5) == 0); /* does not fit */
}

/* Past the run's cap on names, new names share the series name=(other);
 * the other tags stay. */
static void test_name_cap(void)
{
    struct once *run = once_new();
    once_limit_names(run, 2);
    struct metrics *m = metrics_new();
    lua_State *L = probe();
    int a = metrics_tagset_named(m, run, KEY("method\x1fGET\x1ename\x1f/a"));
    int b = metrics_tagset_named(m, run, KEY("method\x1fGET\x1ename\x1f/b"));
    int c = metrics_tagset_named(m, run, KEY("method\x1fGET\x1ename\x1f/c"));
    int d = metrics_tagset_named(m, run, KEY("method\x1fPOST\x1ename\x1f/d"));
    int e = metrics_tagset_named(m, run, KEY("method\x1fGET\x1ename\x1f/e"));
    int nameless = metrics_tagset_named(m, run, KEY("method\x1fGET"));
    CHECK(a >= 0 && b >= 0 && a != b && c >= 0 && c != a && c != b && c == e && d != c);
    CHECK(metrics_tagset_named(m, run, KEY("method\x1fGET\x1ename\x1f/a")) == a);
    CHECK(nameless >= 0 && nameless != c);
    metrics_add(m, M_HTTP_REQS, c, 1);
    metrics_add(m, M_HTTP_REQS, d, 1);
    metrics_add(m, M_HTTP_REQS, e, 1);
    EVAL_IS(L, m, "S('http_reqs', {method = 'GET', name = '(other)'}).value", 2);
    EVAL_IS(L, m, "S('http_reqs', {method = 'POST', name = '(other)'}).value", 1);
    /* another thread of the same run: the admitted names are the run's */
    struct metrics *m2 = metrics_new();
    int b2 = metrics_tagset_named(m2, run, KEY("method\x1fPUT\x1ename\x1f/b"));
    int f2 = metrics_tagset_named(m2, run, KEY("method\x1fPUT\x1ename\x1f/f"));
    metrics_add(m2, M_HTTP_REQS, b2, 1);
    metrics_add(m2, M_HTTP_REQS, f2, 1);
    EVAL_IS(L, m2, "S('http_reqs', {method = 'PUT', name = '/b'}).value", 1);
    EVAL_IS(L, m2, "S('http_reqs', {method = 'PUT', name = '(other)'}).value", 1);
    /* no run: no cap */
    CHECK(metrics_tagset_named(m2, NULL, KEY("name\x1f/z")) != metrics_tagset_named(m2, NULL, KEY("name\x1f/y")));
    metrics_free(m2);
    lua_close(L);
    metrics_free(m);
    once_free(run);
}

int main(void)
{
    test_definitions();
    test_tag_interning();
    test_series_kinds();
    test_merge();
    test_tagkey_merge();
    test_name_cap();
    return check_report("metrics");
}
