#ifndef TIDE_WORKER_H
#define TIDE_WORKER_H
#include "job.h"
#include "signals.h"

#include <stddef.h>

/* tide worker: reads one job (a JSON line) on standard input, runs its load,
 * writes the results document on standard output. Exit codes as tide run's. */
int cmd_worker(int argc, char **argv, const struct signals *sig);

/* One job's run, as tide worker and tide lambda make it. */
struct job_result {
    const char *who;            /* in: names the command in messages ("tide worker") */
    int rc;                     /* the job's exit code, as tide run's */
    char *doc;                  /* the results document (free() it); NULL: none */
    size_t len;
};

/* Runs one job (its JSON text) in this process, as `tide run --segment ...
 * --data ... --out json=...` would: a fresh Lua state and a temporary
 * directory for it (under $TMPDIR, else /tmp), both gone when it returns.
 * Messages go to stderr. */
void worker_run_job(const char *text, size_t len, const struct signals *sig, const struct job_ctl *ctl,
                    struct job_result *out);

#endif
