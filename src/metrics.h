#ifndef TIDE_METRICS_H
#define TIDE_METRICS_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Per-thread metric registry: metrics by name, each with one series per tag
 * set. Tag sets are interned to small ids, so the hot path does one hash
 * lookup per request and then indexes arrays. Merged by the main thread. */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_RATE, METRIC_TREND };
enum metric_contains { CONTAINS_DEFAULT, CONTAINS_TIME, CONTAINS_DATA };

/* Built-in metrics, defined in this order by metrics_new. */
enum {
    M_HTTP_REQS,
    M_HTTP_REQ_DURATION,
    M_HTTP_REQ_WAITING,
    M_HTTP_REQ_CONNECTING,
    M_HTTP_REQ_TLS,
    M_HTTP_REQ_FAILED,
    M_HTTP_BODY_TRUNCATED,
    M_HTTP_REQS_CURL,           /* the requests libcurl carried (bookkeeping: the summary's engines line) */
    M_HTTP_REQS_LEAN,           /* ... and the lean HTTP/1.1 transport */
    M_DATA_SENT,
    M_DATA_RECEIVED,
    M_ITERATIONS,
    M_ITERATION_DURATION,
    M_ITERATION_ERRORS,
    M_ITERATIONS_INTERRUPTED,
    M_VUS,
    M_VUS_MAX,
    M_DROPPED_ITERATIONS,
    M_GROUP_DURATION,
    M_ITERATION_START_DELAY,
    M_BUILTIN_COUNT
};

struct metrics;
struct once;
struct hist;
struct vhist;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Returns the metric id; an existing name must have the same type (else -1). */
int metrics_define(struct metrics *m, const char *name, enum metric_type t, enum metric_contains c);
int metrics_find(const struct metrics *m, const char *name);
/* What metric id (a valid one) contains. */
enum metric_contains metrics_contains_of(const struct metrics *m, int id);
/* The name of built-in metric i (0 .. M_BUILTIN_COUNT-1), else NULL. */
const char *metrics_builtin_name(int i);

/* Tag set key: "k\x1fv\x1ek\x1fv", keys sorted. Returns its id (-1 on OOM). */
int metrics_tagset(struct metrics *m, const char *key, size_t len);
/* The same for samples of a run: a key with a `name` this thread has not
 * seen asks the run (struct once, shared by its threads) whether the name is
 * one of its first max_names; if not, the sample goes to the key with
 * name:(other) instead, so every thread sends the same names there. run
 * NULL: no limit. */
int metrics_tagset_named(struct metrics *m, struct once *run, const char *key, size_t len);

#define METRICS_NAME_OTHER "(other)"
#define TAGKEY_OTHER_MAX 4096

/* counter: adds; gauge: sets; rate: counts value != 0 as a pass;
 * trend: records (time trends in microseconds, other trends the value as it
 * is, in a vhist: the caller refuses NaN and infinities). */
void metrics_add(struct metrics *m, int metric, int tagset, double value);

/* The one merge: threads into a run, documents into one (tide report),
 * workers into a coordinator. Counters and rates add, trends add buckets,
 * the VU gauges add (each part had its share of the users), a scenario's
 * gauges keep the value set last (wall-clock time) and the extremes of
 * all. False when a metric has another type in dst. */
bool metrics_merge(struct metrics *dst, const struct metrics *src);

/* One series as read back from a document, merged into m's series of
 * (metric, tagset) by metrics_merge's rules. hist is only read. */
struct metrics_value {
    double value, min, max;     /* counter: value; gauge: value, min, max */
    uint64_t count, passes, total, at; /* counter: count; rate: passes, total; gauge: at (ns) */
    struct hist *hist;          /* trend: µs (only read) */
    struct vhist *values;       /* or trend: values (only read) */
};
/* "counter" ... "trend" and "default", "time", "data" to their enums: -1 if unknown. */
int metrics_type_named(const char *name);
int metrics_contains_named(const char *name);
/* False when values would go into a time trend (nothing changes then). */
bool metrics_put(struct metrics *m, int metric, int tagset, const struct metrics_value *v);
/* Only the metrics a scenario or tide module defined (checks, celery_*,
 * custom): what setup and teardown record of those counts; their requests don't. */
bool metrics_merge_custom(struct metrics *dst, const struct metrics *src);

/* Pushes { [name] = { type=, contains=, series = { {tags={...}, ...}, ... } } }
 * with counters {value, count}, gauges {value, min, max, at (wall clock, s)},
 * rates {passes, total} and trends {hist = tide.hist userdata (a copy;
 * of unit "us" for time trends, "value" for others)}:
 * the registry form that tide.metrics.merge reads back. */
void metrics_push(lua_State *L, const struct metrics *m);
/* The same, but the trends' histograms move to Lua instead of being copied
 * (at the end of a run, with thousands of request names, a copy of every
 * histogram was a third of the peak memory); m's trends are then empty. */
void metrics_hand_over(lua_State *L, struct metrics *m);

/* Merges two canonical tag keys (b's value wins on a shared key) into out.
 * Returns the merged length, 0 when it does not fit (or both are empty). */
size_t metrics_tagkey_merge(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t cap);

/* The longest tag-set key a scenario may set (its `tags`). */
#define TAGS_MAX 512
#define TAG_KV '\x1f'
#define TAG_SEP '\x1e'

#endif
