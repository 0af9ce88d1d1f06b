#ifndef TIDE_RUN_H
#define TIDE_RUN_H
#include <stdbool.h>

#include "exitcodes.h"
#include "signals.h"

int cmd_run(int argc, char **argv, const struct signals *sig);

#endif
