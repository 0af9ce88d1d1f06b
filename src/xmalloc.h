#ifndef TIDE_XMALLOC_H
#define TIDE_XMALLOC_H
#include <stddef.h>

/* tide's own allocations: out of memory is not a state tide can carry on
 * from with numbers it could trust, so these print what was asked and abort
 * (as Redis's zmalloc does). Lua's and libcurl's allocations are theirs:
 * they return NULL to them, and tide checks what they return. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
