#ifndef TIDE_RUN_H
#define TIDE_RUN_H
#include <stdbool.h>

#include "exitcodes.h"
#include "job.h"
#include "run_args.h"
#include "signals.h"

/* tide run, tide setup, tide teardown: one scenario's life, or one part of it. */
int cmd_run(enum run_mode mode, int argc, char **argv, const struct signals *sig);
/* tide run for a worker's job (tide worker, tide lambda): the load also
 * watched as job says (standard input, figures on stderr, a deadline). */
int cmd_run_job(int argc, char **argv, const struct signals *sig, const struct job_ctl *job);

#endif
