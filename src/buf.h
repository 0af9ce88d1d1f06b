#ifndef TIDE_BUF_H
#define TIDE_BUF_H
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer, reused across requests so steady load allocates nothing. */
struct buf {
    char *data;
    size_t len, cap;
};

static inline bool buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64; /* most are URLs and header lines: thousands of users hold one each */
    while (cap < b->len + extra)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return false;
    b->data = d;
    b->cap = cap;
    return true;
}

static inline bool buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return true;
    if (!buf_reserve(b, n))
        return false;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

/* Appends what of p keeps b within max bytes (a body kept up to max_body);
 * *cut set when some was left out. False: out of memory. */
static inline bool buf_append_capped(struct buf *b, const void *p, size_t n, size_t max, bool *cut)
{
    size_t room = b->len < max ? max - b->len : 0;
    size_t keep = n < room ? n : room;
    if (keep < n)
        *cut = true;
    return buf_append(b, p, keep);
}

static inline void buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){0};
}

#endif
