#ifndef TIDE_REPL_H
#define TIDE_REPL_H

#include "exitcodes.h"
#include "signals.h"

/* `tide repl [SCENARIO] [--target URL] [--env KEY=VALUE]... [--threads N]`:
 * a Lua prompt on the main thread. 0, or 1 when off a terminal some chunk
 * raised; 2 for a bad command line. */
int cmd_repl(int argc, char **argv, const struct signals *sig);

#endif
