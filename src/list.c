/* `tide list` and "did you mean": the named scenarios tide can find. */
#include "list.h"
#include "state.h"
#include "embedded.h"
#include "options.h"
#include "exitcodes.h"
#include "scenario.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 512

struct names {
    char *name[MAX_NAMES];
    int n;
};

static void add_name(struct names *ns, const char *name, size_t len)
{
    for (int i = 0; i < ns->n; i++)
        if (strlen(ns->name[i]) == len && strncmp(ns->name[i], name, len) == 0)
            return;
    if (ns->n < MAX_NAMES && (ns->name[ns->n] = strndup(name, len)))
        ns->n++;
}

static void scan_dir(struct names *ns, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".lua") == 0 && e->d_name[0] != '.')
            add_name(ns, e->d_name, n - 4);
    }
    if (d)
        closedir(d);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The order scenario_resolve looks in: scenarios/, $TIDE_PATH, built-ins. */
static void collect(struct names *ns)
{
    scan_dir(ns, "scenarios");
    const char *tp = getenv("TIDE_PATH");
    while (tp && *tp) {
        size_t n = strcspn(tp, ":");
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)n, tp);
        if (n)
            scan_dir(ns, dir);
        tp += n + (tp[n] == ':');
    }
    for (const struct embedded_file *f = embedded_files; f->name; f++)
        if (strncmp(f->name, "scenario:", 9) == 0)
            add_name(ns, f->name + 9, strlen(f->name + 9));
    qsort(ns->name, (size_t)ns->n, sizeof ns->name[0], by_name);
}

static void free_names(struct names *ns)
{
    for (int i = 0; i < ns->n; i++)
        free(ns->name[i]);
}

/* "constant-vus, 50 VUs for 1m" from the module's options table. */
static void describe_size(lua_State *L, int mod, char *buf, size_t len)
{
    struct options o;
    char err[OPTIONS_ERR];
    options_init(&o);
    lua_getfield(L, mod, "options");
    bool ok = lua_isnil(L, -1) || (lua_istable(L, -1) && options_from_lua(L, -1, &o, err));
    lua_pop(L, 1);
    if (!ok || !options_finish(&o, 1, err)) {
        snprintf(buf, len, "(bad options)");
        return;
    }
    const struct scen *s = &o.scen[0];
    if (o.nscen > 1)
        snprintf(buf, len, "%d scenarios, up to %lld VUs", o.nscen, options_total_vus(&o));
    else if (s->executor == EXEC_SHARED_ITERATIONS || s->executor == EXEC_PER_VU_ITERATIONS)
        snprintf(buf, len, "%s, %lld VUs, %lld iterations", executor_name(s->executor), s->vus, s->iterations);
    else
        snprintf(buf, len, "%s, up to %lld VUs for %gs", executor_name(s->executor), scen_max_vus(s),
                 s->duration);
}

static void list_one(lua_State *L, const char *name)
{
    char path[4096], err[2048], size[128] = "", where[16] = "";
    scenario_resolve(name, path, sizeof path);
    if (strncmp(path, "builtin:", 8) == 0)
        snprintf(where, sizeof where, " (built in)");
    int top = lua_gettop(L);
    if (scenario_load(L, path, err, sizeof err) != 0) {
        printf("  %-20s (does not load: %s)\n", name, err);
        lua_settop(L, top);
        return;
    }
    describe_size(L, lua_gettop(L), size, sizeof size);
    lua_getfield(L, -1, "description");
    printf("  %-20s %-44s %s%s\n", name, size, lua_isstring(L, -1) ? lua_tostring(L, -1) : "", where);
    lua_settop(L, top);
}

int cmd_list(int argc, char **argv)
{
    static const char usage[] = "usage: tide list\n"
                                "  the scenarios tide can run by name, with their load and description\n";
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(usage, stdout);
        return EXIT_PASS;
    }
    if (argc > 0) {
        fprintf(stderr, "tide list: unexpected argument '%s'\n%s", argv[0], usage);
        return EXIT_USAGE;
    }
    struct names ns = {0};
    collect(&ns);
    struct tctx ctx;
    lua_State *L = tctx_open(&ctx, 1);
    if (!L) {
        free_names(&ns);
        fprintf(stderr, "tide: out of memory\n");
        return EXIT_SCRIPT;
    }
    printf("scenarios (scenarios/, $TIDE_PATH, built in):\n");
    for (int i = 0; i < ns.n; i++)
        list_one(L, ns.name[i]);
    tctx_close(&ctx);
    free_names(&ns);
    return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void list_suggest(const char *unknown)
{
    struct names ns = {0};
    collect(&ns);
    bool any = false;
    for (int i = 0; i < ns.n; i++) {
        if (edit_distance(unknown, ns.name[i]) > 2 && !strstr(ns.name[i], unknown))
            continue;
        fprintf(stderr, "%s  %s\n", any ? "" : "did you mean:\n", ns.name[i]);
        any = true;
    }
    if (!any && ns.n) {
        fprintf(stderr, "known scenarios:");
        for (int i = 0; i < ns.n; i++)
            fprintf(stderr, " %s", ns.name[i]);
        fprintf(stderr, "\n");
    }
    free_names(&ns);
}
