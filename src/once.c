#include "once.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ONCE_MAX 4096   /* beyond this many keys, everything counts as new */

struct once {
    pthread_mutex_t lock;
    char *keys[ONCE_MAX];
    size_t n;
};

struct once *once_new(void)
{
    struct once *o = calloc(1, sizeof *o);
    if (o)
        pthread_mutex_init(&o->lock, NULL);
    return o;
}

void once_free(struct once *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->keys[i]);
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
