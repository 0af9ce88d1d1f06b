#ifndef TIDE_DATA_H
#define TIDE_DATA_H
#include <stdbool.h>
#include <stddef.h>

/* Test data (tide.data.csv, tide.data.json): a file parsed once, on the
 * main thread, into one immutable C copy that every engine thread's Lua
 * state reads through proxies, without locks and without copies per user.
 * Nothing here changes after dreg_add: that is what makes the reads safe. */

enum dkind { D_NULL, D_BOOL, D_INT, D_NUM, D_STR, D_ARRAY, D_OBJECT };

struct dpair;

/* A JSON value. */
struct dval {
    enum dkind kind;
    size_t len;                     /* bytes of a string; items of an array or object */
    union {
        bool b;
        long long i;
        double n;
        const char *s;
        const struct dval *items;   /* array */
        const struct dpair *pairs;  /* object, sorted by key (bytes) */
    } u;
};

struct dpair {
    const char *key;
    size_t klen;
    struct dval val;
};

/* A CSV file: cells are spans of one text; with a header, its cells come
 * first (the field names) and every row has as many. */
struct dcsv {
    size_t nrows;
    size_t nfields;                 /* the header's fields; 0 without a header */
    size_t width;                   /* cells per row when every row has as many, else 0 */
    size_t *row_start;              /* nrows + 1 cell indexes when width is 0, else NULL */
    size_t *cell_off;               /* ncells + 1 offsets in text */
    char *text;
};

enum dstore_kind { DS_CSV, DS_JSON };

struct arena;

/* One loaded file. */
struct dstore {
    enum dstore_kind kind;
    struct dcsv csv;
    struct dval root;               /* JSON */
    struct arena *arena;            /* JSON nodes and strings */
    char *key;                      /* what the registry finds it by */
    char *path;                     /* for messages */
    struct dstore *next;
};

/* ---- CSV ---- */

struct csv_opts {
    bool header;                    /* the first row names the fields (default) */
    char sep;                       /* ',' by default */
};

/* Parses text (taking it: it is unescaped in place and kept, or freed on
 * error). NULL with "PATH:LINE: reason" in err when the file is malformed. */
struct dstore *data_csv_parse(char *text, size_t len, const struct csv_opts *o, const char *path,
                              char *err, size_t errlen);

/* Row r (0-based): its first cell's index and how many cells it has. */
void data_csv_row(const struct dcsv *c, size_t r, size_t *first, size_t *n);
/* Cell i's bytes. */
const char *data_csv_cell(const struct dcsv *c, size_t i, size_t *len);
/* The field named name in the header: its index, or -1. */
long data_csv_field(const struct dcsv *c, const char *name, size_t len);

/* ---- JSON, built by the caller (from a decoded value) ---- */

struct dstore *data_json_new(void);
/* Memory that lives as long as the store. */
void *data_alloc(struct dstore *s, size_t n);
char *data_strdup(struct dstore *s, const char *text, size_t len);
/* Sorts an object's pairs by key; false when two keys are the same. */
bool data_sort_pairs(struct dpair *pairs, size_t n);
/* The pair with this key in a sorted object, or NULL. */
const struct dpair *data_find_pair(const struct dval *obj, const char *key, size_t len);

/* The whole file, NULL (errno set) when it cannot be read. */
char *data_read_file(const char *path, size_t *len);

void data_store_free(struct dstore *s);

/* ---- the run's registry: filled by the main thread, read by every thread ---- */

struct dreg;

struct dreg *dreg_new(void);
void dreg_free(struct dreg *r);
/* The store registered under key, or NULL. Lock-free: any thread. */
const struct dstore *dreg_find(const struct dreg *r, const char *key);
/* Registers s under key (taking it). Only one thread (the main one) adds. */
const struct dstore *dreg_add(struct dreg *r, const char *key, const char *path, struct dstore *s);

#endif
