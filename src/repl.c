/* `tide repl`: read a chunk, run it, print what it returned, again. */
#include "repl.h"
#include "block.h"
#include "guard.h"
#include "once.h"
#include "options.h"
#include "repl_edit.h"
#include "repl_life.h"
#include "scenario.h"
#include "state.h"
#include "xmalloc.h"

#include <lauxlib.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE "usage: tide repl [SCENARIO] [--target URL] [--env KEY=VALUE]... [--threads N]"
#define EOF_MARK "<eof>"

struct repl {
    struct repl_cli cli;
    struct tctx ctx;
    lua_State *L;
    const struct signals *sig;
    struct line_reader *in;
    struct repl_life *life;
    bool tty;
    bool quit;                  /* exit() was called */
    int failed;                 /* chunks that raised */
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "tide repl: ");
    fprintf(stderr, what, arg);
    fprintf(stderr, "\n%s\n", USAGE);
    return EXIT_USAGE;
}

static int check_option(struct repl_cli *c, const char *name, const char *value)
{
    char err[OPTIONS_ERR];
    if (strcmp(name, "target") == 0) {
        if (!url_valid(value))
            return usage_error("--target: expected an http:// or https:// URL, got '%s'", value);
        c->target = value;
    } else if (strcmp(name, "threads") == 0) {
        struct options *o = xcalloc(1, sizeof *o);
        options_init(o);
        bool ok = options_set_cli(o, "threads", value, err);
        free(o);
        if (!ok)
            return usage_error("%s", err);
        c->threads = value;
    } else if (strcmp(name, "env") == 0) {
        const char *eq = strchr(value, '=');
        if (!eq || eq == value)
            return usage_error("--env: expected KEY=VALUE, got '%s'", value);
        if (c->nenv == REPL_MAX_ENV)
            return usage_error("--env: at most 256 of them (%s is one more)", value);
        c->env[c->nenv++] = (char *)value;
    } else {
        return usage_error("unknown option '--%s'", name);
    }
    return 0;
}

static int parse_args(struct repl_cli *c, int argc, char **argv, bool *help)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (c->scenario)
                return usage_error("one SCENARIO at most (got another: '%s')", a);
            c->scenario = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '='), *value;
        snprintf(name, sizeof name, "%.*s", (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)), a + 2);
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return usage_error("--%s needs a value", name);
        int rc = check_option(c, name, value);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- TAB ---- */

static char **complete(void *ud, const char *before, size_t *word_len)
{
    lua_State *L = ((struct repl *)ud)->L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.repl");
    char **out = NULL;
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_getfield(L, -1, "complete");
        lua_pushglobaltable(L);
        lua_pushstring(L, before);
        if (lua_pcall(L, 2, 2, 0) == LUA_OK && lua_istable(L, -1)) {
            *word_len = lua_rawlen(L, -2);
            size_t n = lua_rawlen(L, -1);
            out = xcalloc(n + 1, sizeof *out);
            for (size_t i = 0; i < n; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i + 1);
                out[i] = xstrdup(lua_tostring(L, -1));
                lua_pop(L, 1);
            }
        }
    }
    lua_settop(L, top);
    return out;
}

/* ---- one chunk ---- */

/* Compiles the chunk, as an expression first ("=expr" too). 0: the function
 * is on the stack; 1: incomplete, read on; -1: the error is on the stack. */
static int compile(lua_State *L, const char *chunk, size_t len)
{
    const char *expr = chunk[0] == '=' ? chunk + 1 : chunk;
    const char *ret = lua_pushfstring(L, "return %s", expr);
    if (luaL_loadbuffer(L, ret, strlen(ret), "=repl") == LUA_OK) {
        lua_remove(L, -2);
        return 0;
    }
    lua_pop(L, 2);
    int status = luaL_loadbuffer(L, chunk, len, "=repl");
    if (status == LUA_OK)
        return 0;
    size_t n;
    const char *msg = lua_tolstring(L, -1, &n);
    if (status == LUA_ERRSYNTAX && msg && n >= strlen(EOF_MARK) && strcmp(msg + n - strlen(EOF_MARK), EOF_MARK) == 0) {
        lua_pop(L, 1);
        return 1;
    }
    return -1;
}

/* Prints the values from index `first` up through repl.show. */
static void show(lua_State *L, int first)
{
    int n = lua_gettop(L) - first + 1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.repl");
    size_t len = 0;
    const char *text = NULL;
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_getfield(L, -1, "show");
        lua_remove(L, -2);
        lua_insert(L, first);
        if (lua_pcall(L, n, 1, 0) == LUA_OK)
            text = lua_tolstring(L, -1, &len);
    }
    if (text) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    } else {
        fprintf(stderr, "tide repl: cannot print the result: %s\n", lua_tostring(L, -1));
    }
    fflush(stdout);
}

/* Runs the compiled chunk on the top; false when it raised. */
static bool execute(struct repl *r)
{
    lua_State *L = r->L;
    int fn = lua_gettop(L);
    lua_pushcfunction(L, scenario_traceback);
    lua_insert(L, fn);
    r->ctx.interrupts_before = r->sig->interrupts();
    int status = guard_pcall(L, 0, LUA_MULTRET, fn);
    bool ok = status == LUA_OK;
    if (!ok && !r->quit) {
        fflush(stdout);
        fprintf(stderr, "%s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error)");
    } else if (ok && lua_gettop(L) > fn) {
        show(L, fn + 1);
    }
    lua_settop(L, fn - 1);
    return ok || r->quit;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 2 > *cap)
        *buf = xrealloc(*buf, *cap = (*len + n + 2) * 2);
    if (*len)
        (*buf)[(*len)++] = '\n';
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

static void read_eval_print(struct repl *r)
{
    char *chunk = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        bool interrupted;
        const char *line = reader_line(r->in, len ? ">> " : "> ", &interrupted);
        if (!line) {
            if (interrupted) {
                len = 0;
                continue;
            }
            break;
        }
        append(&chunk, &len, &cap, line);
        int c = compile(r->L, chunk, len);
        if (c == 1)
            continue;
        reader_remember(r->in, chunk);
        if (c < 0) {
            fprintf(stderr, "%s\n", lua_tostring(r->L, -1));
            lua_pop(r->L, 1);
            r->failed++;
        } else if (!execute(r)) {
            r->failed++;
        }
        len = 0;
        if (r->quit)
            break;
    }
    if (len && compile(r->L, chunk, len) != 0) { /* input ended inside a chunk */
        fprintf(stderr, "repl: the input ended inside an unfinished chunk\n");
        r->failed++;
    }
    free(chunk);
}

/* ---- the prompt's own globals ---- */

static int l_exit(lua_State *L)
{
    struct repl *r = lua_touserdata(L, lua_upvalueindex(1));
    r->quit = true;
    return luaL_error(L, "exit");
}

static const char *history_path(char *buf, size_t len)
{
    const char *env = getenv("TIDE_HISTORY"), *home = getenv("HOME");
    if (env && *env)
        return env;
    if (!home || !*home)
        return NULL;
    snprintf(buf, len, "%s/.tide_history", home);
    return buf;
}

static int open_state(struct repl *r)
{
    if (!(r->L = tctx_open(&r->ctx, 1))) {
        fprintf(stderr, "tide: out of memory\n");
        return EXIT_SCRIPT;
    }
    r->ctx.interrupts = r->sig->interrupts;
    block_watch_cancel(&r->ctx, r->sig->fd);
    r->ctx.once = once_new();
    struct options *defaults = xcalloc(1, sizeof *defaults);
    options_init(defaults);
    r->ctx.mem_limit = defaults->lua_memory; /* as for setup in `tide run` */
    r->ctx.http.engine_curl = defaults->http.engine_curl; /* TIDE_HTTP_ENGINE, for the prompt's own requests */
    char err[OPTIONS_ERR];
    bool ok = options_finish(defaults, 1, err);
    free(defaults);
    if (!ok) {
        fprintf(stderr, "tide repl: %s\n", err);
        return EXIT_USAGE;
    }
    int rc;
    if (!(r->life = life_open(r->L, &r->ctx, &r->cli, r->sig, &rc)))
        return rc;
    lua_pushlightuserdata(r->L, r);
    lua_pushcclosure(r->L, l_exit, 1);
    lua_setglobal(r->L, "exit");
    if (luaL_dostring(r->L, "help = function(x) print(require('tide.repl_help').text(_G, x)) end") != LUA_OK)
        lua_pop(r->L, 1); /* only out of memory: the prompt goes on without help() */
    return 0;
}

int cmd_repl(int argc, char **argv, const struct signals *sig)
{
    struct repl *r = xcalloc(1, sizeof *r);
    r->sig = sig;
    bool help = false;
    int rc = parse_args(&r->cli, argc, argv, &help);
    if (help)
        printf("%s\n", USAGE);
    if (!rc && !help)
        rc = open_state(r);
    if (!rc && !help) {
        char buf[4096];
        r->tty = isatty(0) && isatty(1);
        r->in = reader_open(r->tty, r->tty ? history_path(buf, sizeof buf) : NULL, complete, r, r->sig->interrupts, r->sig->fd);
        setlocale(LC_CTYPE, "");
        if (r->tty)
            printf("tide %s: a Lua prompt (help() lists the helpers; Ctrl-D leaves)\n", TIDE_VERSION);
        read_eval_print(r);
        reader_close(r->in);
        rc = !r->tty && r->failed ? EXIT_FAILED : EXIT_PASS;
    }
    life_close(r->life);
    if (r->L) {
        once_free(r->ctx.once);
        tctx_close(&r->ctx);
    }
    free(r);
    return rc;
}
