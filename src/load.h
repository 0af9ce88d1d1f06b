#ifndef TIDE_LOAD_H
#define TIDE_LOAD_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "exitcodes.h"
#include "job.h"
#include "signals.h"
#include "runner.h"

/* One load on the run API, watched from the main thread until it ends: the
 * progress line, abort_on_fail thresholds, and Ctrl-C turned into stop
 * levels (1: let running iterations finish, 2: cut them). Shared by
 * `tide run` and the prompt's run{}. */
struct load_watch {
    lua_State *L;               /* the main state: thresholds are judged there */
    int scenario_ref;           /* registry ref of a table whose options.thresholds count */
    const struct options *opt;
    const struct signals *sig;
    int presses_before;         /* Ctrl-C presses that came before the load */
    bool quiet;                 /* no progress line */
    double progress_every;      /* off a terminal: seconds between lines (0: none) */
    const struct job_ctl *job;  /* a worker's job (tide worker, tide lambda); NULL: none */
    int interrupted;            /* out: presses during the load (1 when the job's own watch stopped it) */
    char aborted[512];          /* out: the threshold that stopped it early */
};

void load_watch(struct load_watch *w, struct runner *r, bool snapshots);

/* tide worker: true once standard input has ended (the coordinator closed it
 * or died); what arrives on it after the job is read and dropped. */
bool load_input_ended(void);

/* environ followed by the "KEY=VALUE" extras (later ones win when read by
 * state_push_env); free() the array, not the strings. */
char **load_env(char *const *extra, int nextra);

/* A run's id unless id already holds one: $GITHUB_RUN_ID, else a UTC
 * timestamp and a random tail. */
void load_run_id(char *id, size_t len);

/* Each VU holds a socket (more in batches): false, with why in err, when
 * the file descriptor limit (raised to its hard limit first) is too low,
 * said before the load rather than as failed connections under it. */
bool load_check_fds(const struct options *o, char *err, size_t errlen);

#endif
