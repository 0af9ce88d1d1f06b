#ifndef TIDE_RUN_H
#define TIDE_RUN_H
#include <stdbool.h>

#include "exitcodes.h"
#include "run_args.h"
#include "signals.h"

/* tide run, tide setup, tide teardown: one scenario's life, or one part of it. */
int cmd_run(enum run_mode mode, int argc, char **argv, const struct signals *sig);
/* tide run for tide worker: figures streamed on stderr, standard input's end stops the load. */
int cmd_run_worker(int argc, char **argv, const struct signals *sig);

#endif
