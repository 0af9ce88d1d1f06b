#ifndef TIDE_REPL_EDIT_H
#define TIDE_REPL_EDIT_H
#include <stdbool.h>
#include <stddef.h>

/* Where the prompt's lines come from: libedit on a terminal (editing,
 * history, TAB completion), plain lines otherwise. */

/* TAB: the candidates for the text before the cursor (a NULL-terminated
 * array of malloc'd strings the caller frees, or NULL) and, in *word_len,
 * how many bytes at the end of `before` they complete. */
typedef char **(*complete_fn)(void *ud, const char *before, size_t *word_len);

struct line_reader;

/* history: the file to read now and write at close (NULL: none); presses:
 * the count of Ctrl-C presses, which end the line being edited; wake_fd:
 * an eventfd each press makes readable (-1: none). */
struct line_reader *reader_open(bool tty, const char *history, complete_fn complete, void *ud,
                                int (*presses)(void), int wake_fd);
/* The next line without its newline (valid until the next call), or NULL:
 * at the end of input, or (with *interrupted set) when Ctrl-C cleared the line. */
const char *reader_line(struct line_reader *r, const char *prompt, bool *interrupted);
/* A chunk as it was run, for the history. */
void reader_remember(struct line_reader *r, const char *chunk);
/* Writes the history (kept to HISTORY_MAX entries) and frees r. */
void reader_close(struct line_reader *r);

#define HISTORY_MAX 1000

#endif
