#ifndef TIDE_EMBEDDED_H
#define TIDE_EMBEDDED_H
#include <stddef.h>

/* Lua modules and scenarios compiled into the binary (see tools/embed.c). */
struct embedded_file {
    const char *name;   /* "tide.summary" or "scenario:smoke" */
    const char *path;   /* source path, used as the chunk name */
    const char *src;
    size_t len;
};

extern const struct embedded_file embedded_files[];

const struct embedded_file *embedded_find(const char *name);

#endif
