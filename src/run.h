#ifndef TIDE_RUN_H
#define TIDE_RUN_H
#include <stdbool.h>

/* Exit codes: CI scripts depend on them (README, "Exit codes"). */
enum {
    EXIT_PASS = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_SCRIPT = 3,
    EXIT_STORE = 4,
    EXIT_INTERRUPTED = 130,
};

/* What main owns and the run reads: how many times Ctrl-C was pressed. */
struct signals {
    int (*interrupts)(void);
};

int cmd_run(int argc, char **argv, const struct signals *sig);
void run_usage(void);

#endif
