#ifndef TIDE_WORKER_H
#define TIDE_WORKER_H
#include "signals.h"

/* tide worker: reads one job (a JSON line) on standard input, runs its load,
 * writes the results document on standard output. Exit codes as tide run's. */
int cmd_worker(int argc, char **argv, const struct signals *sig);

#endif
