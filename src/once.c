#include "once.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONCE_MAX 4096   /* beyond this many keys, everything counts as new */

/* The admitted names: open addressing, at most half full. */
struct name {
    char *text;
    size_t len;
    uint64_t hash;
};

struct once {
    pthread_mutex_t lock;
    char *keys[ONCE_MAX];
    size_t n;
    struct name *names;
    size_t nnames, names_cap, max_names;
    bool warned;
};

struct once *once_new(void)
{
    struct once *o = calloc(1, sizeof *o);
    if (o) {
        pthread_mutex_init(&o->lock, NULL);
        o->max_names = DEFAULT_MAX_NAMES;
    }
    return o;
}

void once_free(struct once *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->keys[i]);
    for (size_t i = 0; i < o->names_cap; i++)
        free(o->names[i].text);
    free(o->names);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

bool once_first(struct once *o, const char *key)
{
    if (!o)
        return true;
    bool first = true;
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; i < o->n && first; i++)
        first = strcmp(o->keys[i], key) != 0;
    if (first && o->n < ONCE_MAX && (o->keys[o->n] = strdup(key)))
        o->n++;
    pthread_mutex_unlock(&o->lock);
    return first;
}

void once_limit_names(struct once *o, size_t max)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->max_names = max;
    pthread_mutex_unlock(&o->lock);
}

static uint64_t hash_name(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static struct name *name_slot(struct name *t, size_t cap, const char *s, size_t len, uint64_t h)
{
    size_t j = h & (cap - 1);
    while (t[j].text && !(t[j].hash == h && t[j].len == len && memcmp(t[j].text, s, len) == 0))
        j = (j + 1) & (cap - 1);
    return &t[j];
}

static bool names_grow(struct once *o)
{
    size_t cap = o->names_cap ? o->names_cap * 2 : 64;
    struct name *t = calloc(cap, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < o->names_cap; i++)
        if (o->names[i].text)
            *name_slot(t, cap, o->names[i].text, o->names[i].len, o->names[i].hash) = o->names[i];
    free(o->names);
    o->names = t;
    o->names_cap = cap;
    return true;
}

/* Called with the lock held. */
static bool admit(struct once *o, const char *s, size_t len)
{
    uint64_t h = hash_name(s, len);
    struct name *n = o->names_cap ? name_slot(o->names, o->names_cap, s, len, h) : NULL;
    if (n && n->text)
        return true;
    if (o->nnames >= o->max_names)
        return false;
    if ((o->nnames + 1) * 2 > o->names_cap) {
        if (!names_grow(o))
            return true; /* out of memory: the name goes on untracked, as before the cap */
        n = name_slot(o->names, o->names_cap, s, len, h);
    }
    if (!(n->text = malloc(len + 1)))
        return true;
    memcpy(n->text, s, len);
    n->text[len] = '\0';
    n->len = len;
    n->hash = h;
    o->nnames++;
    return true;
}

bool once_name(struct once *o, const char *name, size_t len)
{
    if (!o)
        return true;
    pthread_mutex_lock(&o->lock);
    bool own = admit(o, name, len);
    bool warn = !own && !o->warned;
    if (warn)
        o->warned = true;
    size_t max = o->max_names;
    pthread_mutex_unlock(&o->lock);
    if (warn)
        fprintf(stderr, "tide: more than %zu distinct request names (tag name): samples of the others "
                "are counted under name:(other); give requests with ids in their URL a `name`, "
                "or raise --max-names\n", max);
    return own;
}
