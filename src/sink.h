#ifndef TIDE_SINK_H
#define TIDE_SINK_H
#include <stdarg.h>
#include <stdio.h>

/* Where a run's messages go: the caller of the run API decides (stderr for
 * `tide run`, the prompt's screen, a worker's log). Called from any thread. */
enum sink_kind { SINK_ERROR, SINK_WARNING, SINK_INFO };

struct sink {
    void (*message)(void *ud, enum sink_kind kind, const char *text);
    void *ud;
};

static inline void sink_say(const struct sink *s, enum sink_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void sink_say(const struct sink *s, enum sink_kind kind, const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (s && s->message)
        s->message(s->ud, kind, text);
}

#endif
