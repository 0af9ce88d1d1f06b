#ifndef TIDE_SPLIT_H
#define TIDE_SPLIT_H
#include <stdint.h>

#include "options.h"

/* Thread `thread`'s share of `total` users over `threads` threads: the
 * shares differ by at most one and add up to total. */
unsigned split_share(long long total, unsigned threads, unsigned thread);
/* VU ids: scenario scen's share on thread `thread` starts at this id
 * (ids run 1..N over all scenarios and threads, each exactly once). */
unsigned split_first_id(const struct options *o, unsigned threads, unsigned scen, unsigned thread);

/* The integral of the arrival rate over the first t seconds of the
 * scenario (t past its end counts up to the end). */
double arrivals_by(const struct scen *s, double t);
/* Seconds from the scenario's start to global arrival k, or < 0 past the end. */
double arrival_offset(const struct scen *s, uint64_t k);
/* Users a ramping-vus scenario should run t seconds after its start. */
unsigned ramp_target(const struct scen *s, double t);

#endif
