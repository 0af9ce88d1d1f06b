/* tide: the command line. */
#include "exitcodes.h"
#include "lambda_runtime.h"
#include "list.h"
#include "luacmd.h"
#include "repl.h"
#include "run.h"
#include "worker.h"

#include <curl/curl.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static volatile sig_atomic_t interrupts;
static int interrupt_fd = -1;   /* an eventfd: blocking waits wake on it */

static void on_interrupt(int sig)
{
    (void)sig;
    if (interrupts < 100)
        interrupts++;
    uint64_t one = 1;
    if (interrupt_fd >= 0 && write(interrupt_fd, &one, sizeof one) < 0) {
        /* the counter alone still stops the next wait within its timeout */
    }
}

static int interrupt_count(void)
{
    return interrupts;
}

static void usage(FILE *f)
{
    fprintf(f,
            "tide %s — a load tester you script in Lua\n\n"
            "usage:\n"
            "  tide run SCENARIO [options]   run a scenario (a file, or scenarios/NAME.lua)\n"
            "  tide run --help               the run options\n"
            "  tide setup SCENARIO [--target URL] [--env KEY=VALUE]... [--out-data FILE]\n"
            "                                run only setup; its data as JSON (stdout by default)\n"
            "  tide teardown SCENARIO --data FILE [--target URL] [--env KEY=VALUE]...\n"
            "                                run only teardown, with that data\n"
            "  tide repl [SCENARIO] [--target URL] [--env KEY=VALUE]... [--threads N]\n"
            "                                a Lua prompt: setup(), run{...}, teardown() step by step\n"
            "  tide worker                   run one job read as JSON on stdin (tide run --workers)\n"
            "  tide lambda                   the AWS Lambda custom runtime: each invocation a job\n"
            "                                (what the bootstrap of make lambda's zip runs)\n"
            "  tide list                     the named scenarios\n"
            "  tide report SOURCE... [--html FILE] [--json FILE]\n"
            "                                print a stored run again (merging several exactly);\n"
            "                                SOURCE: results.json or pg:DSN#RUN_ID|latest|latest~N\n"
            "  tide compare BASE CURRENT [--tolerance 10%%] [--min-delta 10ms] [--metric NAME]...\n"
            "                                per request: latency, req/s, errors; exit 1 if worse\n"
            "                                beyond the tolerance and the floor (tide compare -h)\n"
            "  tide db init DSN | db runs DSN [--scenario NAME] [--last N] | db import DSN FILE\n"
            "  tide --version\n\n"
            "exit codes: 0 pass, 1 a threshold failed, 2 bad command line\n"
            "or options, 3 the script failed, 4 results not stored where asked,\n"
            "5 a worker failed (the results lack its share), 130 interrupted\n",
            TIDE_VERSION);
}

/* glibc's calloc bypasses the per-thread cache that malloc serves from, and
 * libcurl 7.88 callocs a block for every response header it stores: about
 * 370 instructions a call, against about 170 through malloc + memset. */
static void *calloc_via_malloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = malloc(n * size);
    /* hide p's origin, or the compiler folds malloc + memset back into calloc */
    __asm__ volatile("" : "+r"(p));
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void init_curl(void)
{
    curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, free, realloc, strdup, calloc_via_malloc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_PASS;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("tide %s (%s)\n", TIDE_VERSION, curl_version());
        return EXIT_PASS;
    }
    if (strcmp(cmd, "list") == 0)
        return cmd_list(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0 || strcmp(cmd, "compare") == 0 || strcmp(cmd, "db") == 0) {
        init_curl();
        int rc = cmd_lua(cmd, argc - 2, argv + 2);
        curl_global_cleanup();
        return rc;
    }
    static const char *const lives[] = {"run", "setup", "teardown"};
    int mode = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(cmd, lives[i]) == 0)
            mode = i;
    bool worker = strcmp(cmd, "worker") == 0, lambda = strcmp(cmd, "lambda") == 0;
    if (mode < 0 && strcmp(cmd, "repl") != 0 && !worker && !lambda) {
        fprintf(stderr, "tide: unknown command '%s' (valid: run, setup, teardown, worker, lambda, repl, list, report, "
                        "compare, db, --help, "
                        "--version)\n", cmd);
        return EXIT_USAGE;
    }
    /* thousands of users grow a thread's heap page by page: one mprotect each,
     * tens of thousands at start-up; a generous top pad grows it in big steps */
    mallopt(M_TOP_PAD, 64 << 20);
    /* no fastbins: glibc consolidates every fastbin chunk in one go on large
     * requests and frees (libcurl's receive buffer, a Lua GC burst); with
     * thousands of users that walks cold memory. 4-8% more requests per
     * second at 5000 users, the same peak RSS. */
    mallopt(M_MXFAST, 0);
    interrupt_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    init_curl();
    struct signals sig = {.interrupts = interrupt_count, .fd = interrupt_fd};
    int rc = worker      ? cmd_worker(argc - 2, argv + 2, &sig)
             : lambda    ? cmd_lambda(argc - 2, argv + 2, &sig)
             : mode >= 0 ? cmd_run((enum run_mode)mode, argc - 2, argv + 2, &sig)
                         : cmd_repl(argc - 2, argv + 2, &sig);
    curl_global_cleanup();
    return rc;
}
