#ifndef TIDE_EXITCODES_H
#define TIDE_EXITCODES_H

/* Exit codes: CI scripts depend on them (README, "Exit codes"). */
enum {
    EXIT_PASS = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_SCRIPT = 3,
    EXIT_STORE = 4,
    EXIT_WORKER = 5,            /* a worker failed: the results lack its share */
    EXIT_INTERRUPTED = 130,
};

#endif
