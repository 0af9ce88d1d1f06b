#ifndef TIDE_RUN_H
#define TIDE_RUN_H
#include <stdbool.h>

#include "exitcodes.h"

/* What main owns and the run reads: how many times Ctrl-C was pressed. */
struct signals {
    int (*interrupts)(void);
    int fd;                     /* an eventfd each press makes readable; -1: none */
};

int cmd_run(int argc, char **argv, const struct signals *sig);

#endif
