#ifndef TIDE_ONCE_H
#define TIDE_ONCE_H
#include <stdbool.h>
#include <stddef.h>

/* What every engine thread of a run shares through one lock, across their
 * separate Lua states and metric registries: the keys of tide.once ("say
 * this once"), and the request names admitted to their own series. */
struct once;

#define DEFAULT_MAX_NAMES 10000

struct once *once_new(void);
void once_free(struct once *o);
/* True the first time key is offered (also when o is NULL or out of memory). */
bool once_first(struct once *o, const char *key);

/* At most max distinct values of the tag `name` get their own series in this
 * run (DEFAULT_MAX_NAMES until set). */
void once_limit_names(struct once *o, size_t max);
/* Whether the name keeps its own series: true for the first max distinct
 * names offered on any thread (and ever after for those), false for every
 * other; the first refusal warns on stderr. True when o is NULL. */
bool once_name(struct once *o, const char *name, size_t len);

#endif
