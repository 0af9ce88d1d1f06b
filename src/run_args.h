#ifndef TIDE_RUN_ARGS_H
#define TIDE_RUN_ARGS_H
#include <stdbool.h>

#include "options.h"
#include "report.h"

#define MAX_CLI_ENV 256
#define MAX_OVERRIDES 64
#define MAX_SEGMENTS 1000000
#define MAX_WORKERS 1000
/* --start-at may be this many seconds in the past (clocks of hosts differ a little) */
#define START_AT_SLACK 1.0

/* Which part of a scenario's life the command runs. */
enum run_mode {
    MODE_RUN,                   /* tide run: setup (unless --data), load, teardown (unless --data) */
    MODE_SETUP,                 /* tide setup: setup only, its data written as JSON */
    MODE_TEARDOWN,              /* tide teardown --data FILE: teardown only */
};

/* `tide run`'s command line (and tide setup's and teardown's). */
struct run_args {
    enum run_mode mode;
    const char *scenario;
    struct outputs out;
    double progress_every;      /* seconds between progress lines off a terminal */
    char *env[MAX_CLI_ENV];     /* --env KEY=VALUE, later ones win over earlier and environ */
    int nenv;
    struct {
        char key[64];
        const char *value;
    } overrides[MAX_OVERRIDES]; /* --vus 10 and the like, in order */
    int noverrides;
    unsigned segment, segments; /* --segment I/N: segment I-1 of N; segments 0: the whole load */
    double start_at;            /* --start-at: wall clock (Unix seconds) the load starts at; 0: now */
    const char *start_at_text;  /* as given, for messages */
    const char *data;           /* --data FILE: setup's data as tide setup wrote it */
    const char *out_data;       /* --out-data FILE: where tide setup writes it (stdout: NULL) */
    unsigned workers;           /* --workers N: the load run by N tide worker processes; 0: here */
    const char *via;            /* --via local, ssh:HOST[,HOST...] or lambda:FUNCTION[:QUALIFIER] (NULL: local) */
    const char *lambda_endpoint; /* --lambda-endpoint URL (NULL: AWS's regional endpoint) */
    bool ssh_copy;              /* --ssh-copy: scp this binary to each ssh host first */
    bool help;                  /* --help: print run_usage, nothing else */
};

/* Walks argv once (after "run"); 0, or EXIT_USAGE with the message printed. */
int run_args_parse(struct run_args *a, enum run_mode mode, int argc, char **argv);
/* Applies the overrides over a scenario's options; 0 or EXIT_USAGE (printed). */
int run_args_apply(const struct run_args *a, struct options *o);
void run_usage(enum run_mode mode);
/* Prints "tide run: " and the message (fmt with one %s); returns EXIT_USAGE. */
int run_usage_error(const char *fmt, const char *arg);

#endif
