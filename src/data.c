/* Test data: CSV parsed in place into one immutable copy, JSON trees in an
 * arena, and the run's registry that hands them to every thread. */
#include "data.h"
#include "xmalloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------- CSV (RFC 4180) ---------------- */

struct csv_parser {
    char *text;                     /* read from p, unescaped cells written at w (w <= p) */
    size_t len, p, w;
    size_t line;
    char sep;
    struct dcsv *c;
    size_t ncells;
    size_t row_cells;               /* cells in the row being read */
    const char *path;
    char *err;
    size_t errlen;
};

static bool csv_fail(struct csv_parser *ps, size_t line, const char *what)
{
    snprintf(ps->err, ps->errlen, "%s:%zu: %s", ps->path, line, what);
    return false;
}

static void push_cell_end(struct csv_parser *ps)
{
    ps->c->cell_off[++ps->ncells] = ps->w;
    ps->row_cells++;
}

/* A line ends at "\n" or "\r\n". */
static size_t eol_len(const struct csv_parser *ps)
{
    if (ps->p < ps->len && ps->text[ps->p] == '\n')
        return 1;
    if (ps->p + 1 < ps->len && ps->text[ps->p] == '\r' && ps->text[ps->p + 1] == '\n')
        return 2;
    return 0;
}

static bool field_ends(const struct csv_parser *ps)
{
    return ps->p >= ps->len || ps->text[ps->p] == ps->sep || eol_len(ps);
}

static bool quoted_field(struct csv_parser *ps)
{
    size_t start_line = ps->line;
    ps->p++;
    for (;;) {
        if (ps->p >= ps->len)
            return csv_fail(ps, start_line, "a quoted field is never closed (a '\"' is missing)");
        char ch = ps->text[ps->p];
        if (ch == '"') {
            if (ps->p + 1 < ps->len && ps->text[ps->p + 1] == '"') {
                ps->text[ps->w++] = '"';
                ps->p += 2;
                continue;
            }
            ps->p++;
            break;
        }
        ps->line += ch == '\n';
        ps->text[ps->w++] = ch;
        ps->p++;
    }
    if (!field_ends(ps))
        return csv_fail(ps, ps->line, "text after a closing quote (a '\"' inside a quoted field is written '\"\"')");
    return true;
}

static bool plain_field(struct csv_parser *ps)
{
    while (!field_ends(ps)) {
        if (ps->text[ps->p] == '"')
            return csv_fail(ps, ps->line, "a '\"' inside an unquoted field (quote the whole field "
                                          "and double the quote: \"a\"\"b\")");
        ps->text[ps->w++] = ps->text[ps->p++];
    }
    return true;
}

/* One record; false on a malformed one. */
static bool record(struct csv_parser *ps)
{
    ps->row_cells = 0;
    for (;;) {
        bool ok = ps->p < ps->len && ps->text[ps->p] == '"' ? quoted_field(ps) : plain_field(ps);
        if (!ok)
            return false;
        push_cell_end(ps);
        if (ps->p < ps->len && ps->text[ps->p] == ps->sep) {
            ps->p++;
            continue;
        }
        size_t n = eol_len(ps);
        ps->p += n;
        ps->line += n > 0;
        return true;
    }
}

static bool header_names_unique(struct csv_parser *ps, size_t line)
{
    struct dcsv *c = ps->c;
    for (size_t i = 0; i < c->nfields; i++)
        for (size_t j = i + 1; j < c->nfields; j++) {
            size_t li, lj;
            const char *a = data_csv_cell(c, i, &li), *b = data_csv_cell(c, j, &lj);
            if (li == lj && memcmp(a, b, li) == 0) {
                char what[160];
                snprintf(what, sizeof what, "the header names the field '%.*s' twice", (int)(li > 100 ? 100 : li), a);
                return csv_fail(ps, line, what);
            }
        }
    return true;
}

/* A record read: the header's names, or a row. */
static bool end_record(struct csv_parser *ps, const struct csv_opts *o, size_t line, bool *have_header)
{
    struct dcsv *c = ps->c;
    if (o->header && !*have_header) {
        *have_header = true;
        c->nfields = ps->row_cells;
        return header_names_unique(ps, line);
    }
    if (o->header && ps->row_cells != c->nfields) {
        char what[128];
        snprintf(what, sizeof what, "%zu fields, but the header has %zu", ps->row_cells, c->nfields);
        return csv_fail(ps, line, what);
    }
    c->row_start[++c->nrows] = ps->ncells;
    return true;
}

/* Every row as wide as the first: the row index is arithmetic, not a table. */
static void settle_width(struct dcsv *c)
{
    size_t first = c->row_start[0];
    size_t w = c->nrows ? c->row_start[1] - first : 0;
    for (size_t r = 1; r <= c->nrows; r++)
        if (c->row_start[r] - c->row_start[r - 1] != w)
            return;
    if (w == 0)
        return;
    c->width = w;
    free(c->row_start);
    c->row_start = NULL;
}

static bool csv_records(struct csv_parser *ps, const struct csv_opts *o)
{
    bool have_header = false;
    if (ps->len >= 3 && memcmp(ps->text, "\xEF\xBB\xBF", 3) == 0)
        ps->p = 3;
    while (ps->p < ps->len) {
        size_t blank = eol_len(ps);
        if (blank) { /* an empty line is no record */
            ps->p += blank;
            ps->line++;
            continue;
        }
        size_t line = ps->line;
        if (!record(ps) || !end_record(ps, o, line, &have_header))
            return false;
    }
    return true;
}

/* Every cell ends at a separator, a line end or the end, every record at a
 * line end or the end: so many at most. Sized once, the index never grows
 * (a growing one would hold two copies at its peak). */
static void count_bounds(const char *text, size_t len, char sep, size_t *cells, size_t *lines)
{
    size_t seps = 0, nl = 0;
    for (size_t i = 0; i < len; i++) {
        seps += text[i] == sep;
        nl += text[i] == '\n';
    }
    *cells = seps + nl + 1;
    *lines = nl + 1;
}

struct dstore *data_csv_parse(char *text, size_t len, const struct csv_opts *o, const char *path,
                              char *err, size_t errlen)
{
    struct dstore *s = xcalloc(1, sizeof *s);
    s->kind = DS_CSV;
    struct csv_parser ps = {.text = text, .len = len, .line = 1, .sep = o->sep, .c = &s->csv,
                            .path = path, .err = err, .errlen = errlen};
    size_t max_cells, max_rows;
    count_bounds(text, len, o->sep, &max_cells, &max_rows);
    s->csv.cell_off = xmalloc((max_cells + 1) * sizeof *s->csv.cell_off);
    s->csv.row_start = xmalloc((max_rows + 1) * sizeof *s->csv.row_start);
    s->csv.cell_off[0] = 0;
    s->csv.text = text;
    if (!csv_records(&ps, o)) {
        data_store_free(s);
        return NULL;
    }
    if (o->header && !s->csv.nfields && ps.ncells == 0) {
        snprintf(err, errlen, "%s: empty: no header row", path);
        data_store_free(s);
        return NULL;
    }
    s->csv.row_start[0] = o->header ? s->csv.nfields : 0;
    settle_width(&s->csv);
    s->csv.cell_off = xrealloc(s->csv.cell_off, (ps.ncells + 1) * sizeof *s->csv.cell_off);
    if (ps.w < len && ps.w > 0) /* the escapes took room: give it back */
        s->csv.text = xrealloc(text, ps.w);
    return s;
}

void data_csv_row(const struct dcsv *c, size_t r, size_t *first, size_t *n)
{
    if (c->width) {
        *first = c->nfields + r * c->width;
        *n = c->width;
    } else {
        *first = c->row_start[r];
        *n = c->row_start[r + 1] - c->row_start[r];
    }
}

const char *data_csv_cell(const struct dcsv *c, size_t i, size_t *len)
{
    *len = c->cell_off[i + 1] - c->cell_off[i];
    return c->text + c->cell_off[i];
}

long data_csv_field(const struct dcsv *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nfields; i++) {
        size_t n;
        const char *f = data_csv_cell(c, i, &n);
        if (n == len && memcmp(f, name, len) == 0)
            return (long)i;
    }
    return -1;
}

/* ---------------- JSON trees in an arena ---------------- */

#define ARENA_BLOCK (256 * 1024)

struct arena {
    struct arena *prev;
    size_t used, cap;
    _Alignas(max_align_t) char mem[];
};

struct dstore *data_json_new(void)
{
    struct dstore *s = xcalloc(1, sizeof *s);
    s->kind = DS_JSON;
    return s;
}

void *data_alloc(struct dstore *s, size_t n)
{
    n = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    struct arena *a = s->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        struct arena *b = xmalloc(sizeof *b + cap);
        b->prev = a;
        b->used = 0;
        b->cap = cap;
        s->arena = a = b;
    }
    void *p = a->mem + a->used;
    a->used += n;
    return p;
}

char *data_strdup(struct dstore *s, const char *text, size_t len)
{
    char *p = data_alloc(s, len + 1);
    memcpy(p, text, len);
    p[len] = '\0';
    return p;
}

static int keycmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int pair_order(const void *x, const void *y)
{
    const struct dpair *a = x, *b = y;
    return keycmp(a->key, a->klen, b->key, b->klen);
}

bool data_sort_pairs(struct dpair *pairs, size_t n)
{
    qsort(pairs, n, sizeof *pairs, pair_order);
    for (size_t i = 1; i < n; i++)
        if (pair_order(&pairs[i - 1], &pairs[i]) == 0)
            return false;
    return true;
}

const struct dpair *data_find_pair(const struct dval *obj, const char *key, size_t len)
{
    size_t lo = 0, hi = obj->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct dpair *p = &obj->u.pairs[mid];
        int c = keycmp(key, len, p->key, p->klen);
        if (c == 0)
            return p;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---------------- files and stores ---------------- */

char *data_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat st;
    /* sized to the file at once: no doubling, no second copy at the peak */
    size_t cap = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, n = 0;
    char *text = xmalloc(cap);
    for (;;) {
        if (n == cap)
            text = xrealloc(text, cap *= 2);
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e) {
        free(text);
        errno = e;
        return NULL;
    }
    *len = n;
    return xrealloc(text, n ? n : 1);
}

void data_store_free(struct dstore *s)
{
    if (!s)
        return;
    free(s->csv.row_start);
    free(s->csv.cell_off);
    free(s->csv.text);
    for (struct arena *a = s->arena, *prev; a; a = prev) {
        prev = a->prev;
        free(a);
    }
    free(s->key);
    free(s->path);
    free(s);
}

/* ---------------- the registry ---------------- */

/* A list that only grows, published with release stores: readers on other
 * threads walk it with acquire loads and never wait. */
struct dreg {
    _Atomic(struct dstore *) head;
};

struct dreg *dreg_new(void)
{
    struct dreg *r = xcalloc(1, sizeof *r);
    atomic_init(&r->head, NULL);
    return r;
}

void dreg_free(struct dreg *r)
{
    if (!r)
        return;
    for (struct dstore *s = atomic_load(&r->head), *next; s; s = next) {
        next = s->next;
        data_store_free(s);
    }
    free(r);
}

const struct dstore *dreg_find(const struct dreg *r, const char *key)
{
    if (!r)
        return NULL;
    for (const struct dstore *s = atomic_load_explicit(&r->head, memory_order_acquire); s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s;
    return NULL;
}

const struct dstore *dreg_add(struct dreg *r, const char *key, const char *path, struct dstore *s)
{
    s->key = xstrdup(key);
    s->path = xstrdup(path);
    s->next = atomic_load_explicit(&r->head, memory_order_relaxed);
    atomic_store_explicit(&r->head, s, memory_order_release);
    return s;
}
