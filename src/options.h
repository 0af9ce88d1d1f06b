#ifndef TIDE_OPTIONS_H
#define TIDE_OPTIONS_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

enum executor { EXEC_NONE = -1, EXEC_SHARED_ITERATIONS, EXEC_PER_VU_ITERATIONS, EXEC_CONSTANT_VUS };

/* A run's settings: the scenario's options table, overridden by the command line. */
struct options {
    enum executor executor;
    long long vus, iterations;      /* 0 = not given */
    double duration;                /* < 0 = not given */
    double graceful_stop;
    unsigned threads;               /* 0 = one per core */
    size_t max_body;
    char target[2048];
};

#define OPTIONS_ERR 512

void options_init(struct options *o);
/* The scenario's `options` table at idx. Returns false with "options.KEY: ..." in err. */
bool options_from_lua(lua_State *L, int idx, struct options *o, char *err);
/* One command-line option ("vus", "30") as given after --. */
bool options_set_cli(struct options *o, const char *key, const char *value, char *err);
/* Fills defaults (executor from what was given, as k6 does) and checks combinations. */
bool options_finish(struct options *o, unsigned cores, char *err);

const char *executor_name(enum executor e);
bool url_valid(const char *url);

#endif
