#ifndef TIDE_ONCE_H
#define TIDE_ONCE_H
#include <stdbool.h>

/* Keys seen in this run, shared by every thread: "say this once" across
 * the engine threads' separate Lua states. */
struct once;

struct once *once_new(void);
void once_free(struct once *o);
/* True the first time key is offered (also when o is NULL or out of memory). */
bool once_first(struct once *o, const char *key);

#endif
