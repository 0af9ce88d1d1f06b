#ifndef TIDE_OPTIONS_H
#define TIDE_OPTIONS_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "http_defaults.h"
#include "metrics.h"

enum executor {
    EXEC_NONE = -1,
    EXEC_SHARED_ITERATIONS,
    EXEC_PER_VU_ITERATIONS,
    EXEC_CONSTANT_VUS,
    EXEC_RAMPING_VUS,
    EXEC_CONSTANT_ARRIVAL_RATE,
    EXEC_RAMPING_ARRIVAL_RATE,
    EXEC_COUNT
};

#define MAX_STAGES 64
#define MAX_SCENARIOS 16
#define SCEN_ENV_MAX 4096

struct stage {
    double duration, target;
};

/* One executor instance ("scenario" in k6's words): who runs what, when. */
struct scen {
    char name[64];              /* "default" unless options.scenarios names it */
    char exec[64];              /* the module function each iteration calls */
    enum executor executor;
    long long vus, iterations;  /* 0 = not given */
    double duration;            /* < 0 = not given */
    double graceful_stop, graceful_ramp_down, start_time;
    long long start_vus, pre_allocated_vus, max_vus;
    double rate, start_rate, time_unit;
    struct stage stages[MAX_STAGES];
    int nstages;
    char tags[TAGS_MAX];        /* tag-set key added to every sample (options.tags + own) */
    size_t tags_len;
    char env[SCEN_ENV_MAX];     /* options.scenarios.NAME.env: "KEY=VALUE\0" each, over --env */
    size_t env_len;
    unsigned given;             /* keys set, one bit each, to catch keys the executor ignores */
};

/* A run's settings: the scenario's options table, overridden by the command line. */
struct options {
    struct scen scen[MAX_SCENARIOS];
    int nscen;
    bool named;                 /* options.scenarios was used */
    unsigned threads;           /* 0 = one per core */
    unsigned segment, segments; /* --segment I/N: this process runs share segment
                                   (from 0) of segments; segments 0: the whole load */
    size_t max_body;
    size_t lua_memory;          /* bytes each Lua state may allocate */
    size_t max_names;           /* distinct request names with a series of their own */
    struct http_defaults http;  /* compression, insecure, ca, cert, key, expect, http_engine */
    char target[2048];
};

/* What a response body may keep when nothing says otherwise. */
#define DEFAULT_MAX_BODY (64ull << 20)
#define OPTIONS_ERR 512
/* The environment variable that picks tide.http's engine ("auto" or "curl")
 * when neither options.http_engine nor --http-engine does. */
#define ENGINE_ENV "TIDE_HTTP_ENGINE"

void options_init(struct options *o);
/* The scenario's `options` table at idx. Returns false with "options.KEY: ..." in err. */
bool options_from_lua(lua_State *L, int idx, struct options *o, char *err);
/* One command-line option ("vus", "30") as given after --. */
bool options_set_cli(struct options *o, const char *key, const char *value, char *err);
/* Fills defaults (executor from what was given, as k6 does) and checks combinations. */
bool options_finish(struct options *o, unsigned cores, char *err);

/* How many VUs a scenario may use at most, and how long it may run in total
 * (start_time + its duration or stages + graceful stop). */
long long scen_max_vus(const struct scen *s);
double scen_end(const struct scen *s);
long long options_total_vus(const struct options *o);

const char *executor_name(enum executor e);
bool url_valid(const char *url);

/* The list of statuses at idx (expect = { 200, 404 }): 1 to MAX_EXPECT
 * integers from 100 to 999 into out; false when it is not one. */
bool options_status_list(lua_State *L, int idx, int out[MAX_EXPECT], int *n);

#endif
