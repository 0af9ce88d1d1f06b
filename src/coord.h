#ifndef TIDE_COORD_H
#define TIDE_COORD_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "run_args.h"
#include "scenario.h"
#include "signals.h"

/* tide run --workers N --via local: the load run by N `tide worker` child
 * processes, segment i/N each, one job each on its standard input. */
struct coord_plan {
    lua_State *L;                       /* for cjson: the jobs are encoded there */
    const char *path;                   /* the scenario's file */
    const struct scenario_source *source;
    const struct run_args *cli;         /* env, option overrides, run id, workers */
    const struct options *opt;          /* for when the load should end */
    const char *data_json;              /* setup's data (NULL: none) */
    size_t data_len;
    const struct signals *sig;
    const char *docs_dir;               /* where worker-I.json are written */
};

struct coord_result {
    unsigned failed;                    /* workers whose share is missing */
    unsigned docs;                      /* documents written to docs_dir */
    bool interrupted;                   /* Ctrl-C reached the coordinator */
};

void coord_run(const struct coord_plan *p, struct coord_result *out);

/* What --via needs that the command line alone does not show, checked
 * before setup runs: for lambda:, the credentials and region in the
 * environment and a load that fits in one invocation. 0, or EXIT_USAGE
 * with the message printed. */
int coord_check(const struct run_args *cli, const struct options *opt);

#endif
