/* The prompt's input: libedit's line editor and history on a terminal,
 * getline otherwise. */
#include "repl_edit.h"
#include "xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

struct line_reader {
    EditLine *el;               /* NULL off a terminal */
    History *hist;
    char *history;              /* its file, or NULL */
    const char *prompt;
    complete_fn complete;
    void *ud;
    int (*presses)(void);       /* Ctrl-C presses so far */
    int presses_before;         /* as the current line began */
    int wake_fd;                /* readable after a press; -1: none */
    bool cut;                   /* Ctrl-C ended the current line */
    char *line;                 /* getline's buffer, or a copy of libedit's line */
    size_t cap;
};

static char *prompt_of(EditLine *el)
{
    struct line_reader *r;
    el_get(el, EL_CLIENTDATA, &r);
    return (char *)r->prompt;
}

static size_t common_prefix(char **c)
{
    size_t n = strlen(c[0]);
    for (size_t i = 1; c[i]; i++) {
        size_t k = 0;
        while (k < n && c[i][k] == c[0][k])
            k++;
        n = k;
    }
    return n;
}

static void list_candidates(char **c)
{
    size_t width = 0, n = 0;
    for (; c[n]; n++)
        if (strlen(c[n]) > width)
            width = strlen(c[n]);
    size_t per_line = 78 / (width + 2);
    if (per_line == 0)
        per_line = 1;
    fputc('\n', stdout);
    for (size_t i = 0; i < n; i++)
        fprintf(stdout, "%-*s%s", (int)(width + 2), c[i], (i + 1) % per_line == 0 || i + 1 == n ? "\n" : "");
    fflush(stdout);
}

static void free_candidates(char **c)
{
    for (size_t i = 0; c && c[i]; i++)
        free(c[i]);
    free(c);
}

/* TAB: inserts what every candidate shares; lists them when that is nothing more. */
static unsigned char on_tab(EditLine *el, int ch)
{
    (void)ch;
    struct line_reader *r;
    el_get(el, EL_CLIENTDATA, &r);
    const LineInfo *li = el_line(el);
    size_t n = (size_t)(li->cursor - li->buffer);
    char *before = xmalloc(n + 1);
    memcpy(before, li->buffer, n);
    before[n] = '\0';
    size_t word = 0;
    char **c = r->complete(r->ud, before, &word);
    free(before);
    unsigned char rc = CC_REFRESH_BEEP;
    if (c && c[0]) {
        size_t common = common_prefix(c);
        if (common > word) {
            char *rest = xmalloc(common - word + 1);
            memcpy(rest, c[0] + word, common - word);
            rest[common - word] = '\0';
            el_insertstr(el, rest);
            free(rest);
            rc = CC_REFRESH;
        } else if (c[1]) {
            list_candidates(c);
            rc = CC_REDISPLAY;
        }
    }
    free_candidates(c);
    return rc;
}

/* One byte of what poll said is there, without waiting: a Ctrl-C between
 * the poll and the read flushes the terminal's input, and a blocking read
 * would then wait for the next key with the press unseen. */
static ssize_t read_now(char *c)
{
    int flags = fcntl(STDIN_FILENO, F_GETFL);
    if (flags < 0 || fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK) < 0)
        return read(STDIN_FILENO, c, 1);
    ssize_t got = read(STDIN_FILENO, c, 1);
    int saved = errno;
    fcntl(STDIN_FILENO, F_SETFL, flags); /* the terminal is the shell's too */
    errno = saved;
    return got;
}

/* libedit's own reader reads again after a signal; this one gives up the
 * line when Ctrl-C was pressed. Multibyte input decoded as the locale says. */
static int read_char(EditLine *el, wchar_t *wc)
{
    struct line_reader *r;
    el_get(el, EL_CLIENTDATA, &r);
    mbstate_t st;
    memset(&st, 0, sizeof st);
    for (;;) {
        if (r->presses() != r->presses_before) {
            r->cut = true;
            return -1;
        }
        /* the eventfd closes the gap between looking at the count and reading */
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
        if (poll(p, r->wake_fd >= 0 ? 2 : 1, -1) < 0)
            continue;
        uint64_t drained;
        if (p[1].revents && read(r->wake_fd, &drained, sizeof drained) < 0) {
            /* drained elsewhere: the count above decides */
        }
        if (!p[0].revents)
            continue;
        char c;
        ssize_t got = read_now(&c);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return (int)got;
        size_t n = mbrtowc(wc, &c, 1, &st);
        if (n == (size_t)-2)
            continue;
        if (n == (size_t)-1)
            *wc = (unsigned char)c;
        return 1;
    }
}

static void load_history(struct line_reader *r)
{
    HistEvent ev;
    if (!r->history || access(r->history, F_OK) != 0)
        return;
    if (history(r->hist, &ev, H_LOAD, r->history) < 0)
        fprintf(stderr, "tide repl: cannot read the history %s: %s (going on without it)\n", r->history,
                errno ? strerror(errno) : "not a history file");
}

static void open_editor(struct line_reader *r)
{
    HistEvent ev;
    r->hist = history_init();
    history(r->hist, &ev, H_SETSIZE, HISTORY_MAX);
    history(r->hist, &ev, H_SETUNIQUE, 1);
    load_history(r);
    r->el = el_init("tide", stdin, stdout, stderr);
    el_set(r->el, EL_CLIENTDATA, r);
    el_set(r->el, EL_EDITOR, "emacs");
    el_set(r->el, EL_PROMPT, prompt_of);
    el_set(r->el, EL_GETCFN, read_char);
    el_set(r->el, EL_HIST, history, r->hist);
    /* the wide calls: libedit's narrow EL_ADDFN keeps wide copies of the
     * names that el_end never frees */
    el_wset(r->el, EL_ADDFN, L"tide-complete", L"complete a name", on_tab);
    el_wset(r->el, EL_BIND, L"^I", L"tide-complete", NULL);
}

struct line_reader *reader_open(bool tty, const char *history_path, complete_fn complete, void *ud,
                                int (*presses)(void), int wake_fd)
{
    struct line_reader *r = xcalloc(1, sizeof *r);
    r->presses = presses;
    r->wake_fd = wake_fd;
    r->complete = complete;
    r->ud = ud;
    r->history = history_path ? xstrdup(history_path) : NULL;
    if (tty)
        open_editor(r);
    return r;
}

static const char *keep(struct line_reader *r, const char *s, size_t n)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n + 1 > r->cap)
        r->line = xrealloc(r->line, r->cap = n + 1);
    memcpy(r->line, s, n);
    r->line[n] = '\0';
    return r->line;
}

static const char *plain_line(struct line_reader *r, bool *interrupted)
{
    errno = 0;
    ssize_t n = getline(&r->line, &r->cap, stdin);
    if (n >= 0)
        return keep(r, r->line, (size_t)n);
    *interrupted = errno == EINTR;
    clearerr(stdin);
    return NULL;
}

const char *reader_line(struct line_reader *r, const char *prompt, bool *interrupted)
{
    *interrupted = false;
    if (!r->el)
        return plain_line(r, interrupted);
    r->prompt = prompt;
    r->presses_before = r->presses();
    r->cut = false;
    int n = 0;
    const char *s = el_gets(r->el, &n);
    if (s && n > 0 && !r->cut)
        return keep(r, s, (size_t)n);
    if (r->cut) { /* Ctrl-C: a fresh, empty line */
        *interrupted = true;
        el_reset(r->el);
        fputs("^C\n", stdout);
        fflush(stdout);
        return NULL;
    }
    fputc('\n', stdout);
    return NULL;
}

void reader_remember(struct line_reader *r, const char *chunk)
{
    HistEvent ev;
    if (r->hist && *chunk)
        history(r->hist, &ev, H_ENTER, chunk);
}

void reader_close(struct line_reader *r)
{
    if (!r)
        return;
    HistEvent ev;
    if (r->hist && r->history && history(r->hist, &ev, H_SAVE, r->history) < 0)
        fprintf(stderr, "tide repl: cannot write the history %s: %s\n", r->history,
                errno ? strerror(errno) : "failed");
    if (r->el)
        el_end(r->el);
    if (r->hist)
        history_end(r->hist);
    free(r->history);
    free(r->line);
    free(r);
}
