#ifndef TIDE_JOB_H
#define TIDE_JOB_H
#include <stdbool.h>

/* How a worker's load is watched besides Ctrl-C: `tide worker` follows its
 * standard input and streams its figures; `tide lambda` stops at the
 * invocation's deadline (README, "AWS Lambda"). */
struct job_ctl {
    bool watch_input;           /* standard input's end (the coordinator gone) stops the load */
    bool stream;                /* a figures line a second on stderr */
    double stop_at;             /* wall clock, s: stop as on a first Ctrl-C (0: never) */
    double cut_at;              /* wall clock, s: cut running iterations, as a second one */
};

#endif
