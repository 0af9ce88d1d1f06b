/* Streaming body decoder: a stack of stages, each feeding the decoded bytes
 * of one coding to the next, the last writing straight into the caller's
 * body buffer. libcurl 7.88's lib/content_encoding.c is the reference for
 * every behaviour a script can see (see decode.h). */
#include "decode.h"

#include <brotli/decode.h>
#include <stddef.h>
#include <stdint.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define CHUNK 16384 /* libcurl's decoding buffer (CURL_MAX_WRITE_SIZE) */
#define STASH 64    /* deflate input kept while a raw-deflate retry is possible */
#define RAW_SLACK 4 /* stray bytes libcurl lets follow a raw deflate stream */
#define ZLIB_PIECE ((size_t)1 << 30)
#define KEEP_MAX 262144     /* a zstd context larger than this is not kept */
#define BR_KEEP 16          /* freed brotli blocks kept for the next stream */
#define BR_KEEP_MAX 65536   /* the largest kept: a small body's ring buffer fits */

enum coding { C_IDENTITY, C_DEFLATE, C_GZIP, C_BR, C_ZSTD, C_UNKNOWN };

/* zlib's progress on the stream of one stage. */
enum zphase {
    ZP_HEAD,    /* no output yet: a deflate body may still turn out raw */
    ZP_BODY,
    ZP_DONE,    /* the stream ended; only raw deflate's slack may follow */
};

/* brotli 1.0 cannot reset a decoder, and its ~9 blocks are made again for
 * every stream: they come back from here instead of malloc. */
struct br_blocks {
    unsigned n;
    void *block[BR_KEEP];
};

union br_head { /* before each block: its size, keeping malloc's alignment */
    size_t cap;
    max_align_t align;
};

struct stage {
    enum coding coding;
    bool fed;                       /* saw body bytes in this response */
    bool ended;                     /* its stream ended (zstd: at a frame's end) */
    bool z_ready;                   /* z was initialised (inflateInit2) */
    enum zphase zphase;
    unsigned slack;                 /* bytes still allowed after a raw deflate end */
    size_t stashed;
    z_stream z;
    BrotliDecoderState *br;
    struct br_blocks br_kept;
    ZSTD_DStream *zs;
    char *buf;                      /* this stage's output when another stage follows */
    unsigned char stash[STASH];     /* deflate input before this read, while ZP_HEAD */
};

struct decoder {
    enum coding content[DECODE_MAX_CODINGS], transfer[DECODE_MAX_CODINGS];
    unsigned ncontent, ntransfer;
    unsigned nstages;               /* set up at the first feed of a response */
    bool set_up;
    bool failed;                    /* an error ended this response's decoding */
    struct stage stage[DECODE_MAX_CODINGS];
    char *scratch;                  /* where dropped output goes */
    /* The feed in progress. */
    struct buf *out;
    size_t max;
    bool *dropped;
};

struct decoder *decoder_new(void)
{
    return calloc(1, sizeof(struct decoder));
}

static void br_end(struct stage *s);
static void br_release(struct stage *s);

/* Gives back what the libraries hold; the next response makes it again. */
static void release_stage(struct stage *s)
{
    if (s->z_ready)
        inflateEnd(&s->z);
    s->z_ready = false;
    br_release(s);
    ZSTD_freeDStream(s->zs);
    s->zs = NULL;
    free(s->buf);
    s->buf = NULL;
}

void decoder_trim(struct decoder *d)
{
    for (unsigned i = 0; i < DECODE_MAX_CODINGS; i++)
        release_stage(&d->stage[i]);
    free(d->scratch);
    d->scratch = NULL;
    d->set_up = false; /* a response under way cannot go on */
    d->failed = true;
}

void decoder_free(struct decoder *d)
{
    if (!d)
        return;
    decoder_trim(d);
    free(d);
}

void decoder_begin(struct decoder *d)
{
    d->ncontent = d->ntransfer = d->nstages = 0;
    d->set_up = d->failed = false;
}

/* ---------------- the codings' names ---------------- */

static enum coding coding_of(const char *name, size_t len)
{
    static const struct {
        const char *name;
        enum coding coding;
    } names[] = {
        {"identity", C_IDENTITY}, {"none", C_IDENTITY}, {"deflate", C_DEFLATE}, {"gzip", C_GZIP},
        {"x-gzip", C_GZIP},       {"br", C_BR},         {"zstd", C_ZSTD},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == len && strncasecmp(name, names[i].name, len) == 0)
            return names[i].coding;
    return C_UNKNOWN;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
    return is_blank(c) || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Items are split at commas; an item's name runs from its first non-blank
 * to its last non-space (inner blanks stay, and make it unknown), as
 * libcurl reads them. */
enum dec_status decoder_add(struct decoder *d, const char *value, size_t len, bool transfer)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_blank(value[i]) || value[i] == ','))
            i++;
        size_t start = i, namelen = 0;
        for (; i < len && value[i] != ','; i++)
            if (!is_space(value[i]))
                namelen = i - start + 1;
        if (namelen == 0 || (transfer && namelen == 7 && strncasecmp(value + start, "chunked", 7) == 0))
            continue;
        if (d->ncontent + d->ntransfer >= DECODE_MAX_CODINGS)
            return DEC_BAD;
        enum coding c = coding_of(value + start, namelen);
        if (transfer)
            d->transfer[d->ntransfer++] = c;
        else
            d->content[d->ncontent++] = c;
    }
    return DEC_OK;
}

bool decoder_active(const struct decoder *d)
{
    for (unsigned i = 0; i < d->ncontent; i++)
        if (d->content[i] != C_IDENTITY)
            return true;
    for (unsigned i = 0; i < d->ntransfer; i++)
        if (d->transfer[i] != C_IDENTITY)
            return true;
    return false;
}

/* ---------------- where decoded bytes go ---------------- */

static enum dec_status feed_stage(struct decoder *d, unsigned i, const char *in, size_t len);

/* Room for stage i's output: the body buffer itself when i is the last
 * stage and the body still has room, else a buffer that is dropped or
 * passed on. NULL when out of memory. */
static char *space_for(struct decoder *d, unsigned i, size_t *n)
{
    if (i + 1 < d->nstages) {
        struct stage *s = &d->stage[i];
        if (!s->buf)
            s->buf = malloc(CHUNK);
        *n = CHUNK;
        return s->buf;
    }
    struct buf *out = d->out;
    if (out && out->len < d->max) {
        size_t room = d->max - out->len;
        *n = room < CHUNK ? room : CHUNK;
        return buf_reserve(out, *n) ? out->data + out->len : NULL;
    }
    if (!d->scratch)
        d->scratch = malloc(CHUNK);
    *n = CHUNK;
    return d->scratch;
}

/* The body's bytes once every coding is undone: kept up to max, the rest
 * dropped. p may be the body buffer's own free space (space_for). */
static enum dec_status deliver(struct decoder *d, const char *p, size_t n)
{
    struct buf *out = d->out;
    if (!out || n == 0)
        return DEC_OK;
    if (p == out->data + out->len) { /* decoded in place, into out's spare room */
        size_t room = out->len < d->max ? d->max - out->len : 0;
        if (n > room)
            *d->dropped = true;
        out->len += n < room ? n : room;
        return DEC_OK;
    }
    return buf_append_capped(out, p, n, d->max, d->dropped) ? DEC_OK : DEC_NOMEM;
}

/* Stage i decoded n bytes: on to the next stage or into the body. */
static enum dec_status pass_on(struct decoder *d, unsigned i, const char *p, size_t n)
{
    if (n == 0)
        return DEC_OK;
    return i + 1 < d->nstages ? feed_stage(d, i + 1, p, n) : deliver(d, p, n);
}

/* ---------------- gzip and deflate (zlib) ---------------- */

/* zlib-wrapped deflate (15), gzip or zlib-wrapped detected (15 + 32),
 * raw deflate (-15); the window is kept when the size stays. */
static enum dec_status zlib_start(struct stage *s, int bits)
{
    int rc;
    if (s->z_ready) {
        rc = inflateReset2(&s->z, bits);
    } else {
        s->z = (z_stream){0};
        rc = inflateInit2(&s->z, bits);
        s->z_ready = rc == Z_OK;
    }
    return rc == Z_OK ? DEC_OK : rc == Z_MEM_ERROR ? DEC_NOMEM : DEC_BAD;
}

/* After the stream's end nothing may follow, but for a few stray bytes
 * after raw deflate (as libcurl allows). */
static enum dec_status zlib_after_end(struct stage *s, size_t len)
{
    if (len > s->slack) {
        s->slack = 0;
        return DEC_REJECTED;
    }
    s->slack -= (unsigned)len;
    return DEC_OK;
}

static enum dec_status zlib_feed(struct decoder *d, unsigned i, const char *in, size_t len);

/* Some servers send "deflate" without the zlib wrapper: libcurl retries a
 * body that fails before any output as raw deflate. The earlier reads of
 * it are in the stash, this one is in. */
static enum dec_status zlib_go_raw(struct decoder *d, unsigned i, const char *in, size_t len)
{
    struct stage *s = &d->stage[i];
    enum dec_status st = zlib_start(s, -MAX_WBITS);
    if (st != DEC_OK)
        return st;
    s->zphase = ZP_BODY;
    s->slack = RAW_SLACK;
    st = s->stashed ? zlib_feed(d, i, (const char *)s->stash, s->stashed) : DEC_OK;
    return st == DEC_OK ? zlib_feed(d, i, in, len) : st;
}

static enum dec_status zlib_error(int rc)
{
    return rc == Z_MEM_ERROR ? DEC_NOMEM : DEC_BAD;
}

/* While a deflate body has given no output, its input is kept (up to
 * STASH bytes) to start again as raw deflate if zlib rejects it. libcurl
 * retries only within its first write; keeping a few bytes makes the retry
 * independent of how the body was split into reads. */
static enum dec_status zlib_feed(struct decoder *d, unsigned i, const char *in, size_t len)
{
    struct stage *s = &d->stage[i];
    if (s->zphase == ZP_DONE)
        return zlib_after_end(s, len);
    z_stream *z = &s->z;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    for (;;) {
        size_t room;
        char *to = space_for(d, i, &room);
        if (!to)
            return DEC_NOMEM;
        z->next_out = (Bytef *)to;
        z->avail_out = (uInt)room;
        int rc = inflate(z, Z_NO_FLUSH);
        size_t made = room - z->avail_out;
        if (rc == Z_DATA_ERROR && s->coding == C_DEFLATE && s->zphase == ZP_HEAD && made == 0)
            return zlib_go_raw(d, i, in, len);
        if (made)
            s->zphase = ZP_BODY;
        enum dec_status st = pass_on(d, i, to, made);
        if (st != DEC_OK)
            return st;
        if (rc == Z_STREAM_END) {
            s->zphase = ZP_DONE;
            s->ended = true;
            return zlib_after_end(s, z->avail_in);
        }
        if (rc == Z_BUF_ERROR || (rc == Z_OK && z->avail_in == 0 && z->avail_out != 0))
            break; /* all taken, nothing held back */
        if (rc != Z_OK)
            return zlib_error(rc);
    }
    if (s->zphase == ZP_HEAD && s->coding == C_DEFLATE) {
        if (s->stashed + len > STASH) {
            s->zphase = ZP_BODY; /* too far in to start again */
        } else {
            memcpy(s->stash + s->stashed, in, len);
            s->stashed += len;
        }
    }
    return DEC_OK;
}

static enum dec_status zlib_setup(struct stage *s)
{
    s->zphase = ZP_HEAD;
    s->stashed = 0;
    s->slack = 0;
    return zlib_start(s, s->coding == C_GZIP ? MAX_WBITS + 32 : MAX_WBITS);
}

/* ---------------- brotli ---------------- */

static enum dec_status brotli_error(BrotliDecoderErrorCode e)
{
    if (e <= BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES && e >= BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES)
        return DEC_NOMEM;
    /* libcurl lists every format error but these two as a bad encoding. */
    if (e == BROTLI_DECODER_ERROR_FORMAT_RESERVED || e == BROTLI_DECODER_ERROR_FORMAT_DISTANCE ||
        e == BROTLI_DECODER_ERROR_UNREACHABLE)
        return DEC_REJECTED;
    return DEC_BAD;
}

static enum dec_status brotli_feed(struct decoder *d, unsigned i, const char *in, size_t len)
{
    struct stage *s = &d->stage[i];
    if (s->ended)
        return DEC_REJECTED;
    const uint8_t *next_in = (const uint8_t *)in;
    size_t avail_in = len;
    for (;;) {
        size_t room;
        char *to = space_for(d, i, &room);
        if (!to)
            return DEC_NOMEM;
        uint8_t *next_out = (uint8_t *)to;
        size_t avail_out = room;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(s->br, &avail_in, &next_in, &avail_out, &next_out, NULL);
        enum dec_status st = pass_on(d, i, to, room - avail_out);
        if (st != DEC_OK)
            return st;
        switch (r) {
        case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
            continue;
        case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
            return DEC_OK;
        case BROTLI_DECODER_RESULT_SUCCESS:
            s->ended = true;
            br_end(s);
            return avail_in ? DEC_REJECTED : DEC_OK;
        default:
            return brotli_error(BrotliDecoderGetErrorCode(s->br));
        }
    }
}

static void *br_alloc(void *opaque, size_t n)
{
    struct br_blocks *kept = opaque;
    unsigned best = kept->n;
    for (unsigned i = 0; i < kept->n; i++) {
        size_t cap = ((union br_head *)kept->block[i])->cap;
        bool fits = cap >= n && cap <= 2 * n + 64; /* no big block for a small need */
        if (fits && (best == kept->n || cap < ((union br_head *)kept->block[best])->cap))
            best = i;
    }
    union br_head *h;
    if (best < kept->n) {
        h = kept->block[best];
        kept->block[best] = kept->block[--kept->n];
    } else {
        h = malloc(sizeof *h + n);
        if (!h)
            return NULL;
        h->cap = n;
    }
    return h + 1;
}

static void br_free(void *opaque, void *p)
{
    struct br_blocks *kept = opaque;
    if (!p)
        return;
    union br_head *h = (union br_head *)p - 1;
    if (h->cap <= BR_KEEP_MAX && kept->n < BR_KEEP)
        kept->block[kept->n++] = h;
    else
        free(h);
}

/* A brotli state lives for one stream: its blocks go back to br_kept
 * (a large ring buffer to the system). */
static void br_end(struct stage *s)
{
    if (s->br)
        BrotliDecoderDestroyInstance(s->br);
    s->br = NULL;
}

static void br_release(struct stage *s)
{
    br_end(s);
    while (s->br_kept.n)
        free(s->br_kept.block[--s->br_kept.n]);
}

/* brotli 1.0 has no reset: a new state per stream, from kept blocks. */
static enum dec_status brotli_setup(struct stage *s)
{
    br_end(s);
    s->br = BrotliDecoderCreateInstance(br_alloc, br_free, &s->br_kept);
    return s->br ? DEC_OK : DEC_NOMEM;
}

/* ---------------- zstd ---------------- */

static enum dec_status zstd_feed(struct decoder *d, unsigned i, const char *in, size_t len)
{
    struct stage *s = &d->stage[i];
    ZSTD_inBuffer src = {in, len, 0};
    for (;;) {
        size_t room;
        char *to = space_for(d, i, &room);
        if (!to)
            return DEC_NOMEM;
        ZSTD_outBuffer dst = {to, room, 0};
        size_t took = src.pos;
        size_t rc = ZSTD_decompressStream(s->zs, &dst, &src);
        if (ZSTD_isError(rc))
            return ZSTD_getErrorCode(rc) == ZSTD_error_memory_allocation ? DEC_NOMEM : DEC_BAD;
        if (src.pos != took || dst.pos)
            s->ended = rc == 0; /* at a frame's end, all of it out (a call with nothing to do asks for the next frame) */
        enum dec_status st = pass_on(d, i, to, dst.pos);
        if (st != DEC_OK)
            return st;
        if (src.pos == src.size && dst.pos < dst.size)
            return DEC_OK;
    }
}

static enum dec_status zstd_setup(struct stage *s)
{
    if (!s->zs) {
        s->zs = ZSTD_createDStream();
        if (!s->zs)
            return DEC_NOMEM;
    }
    return ZSTD_isError(ZSTD_DCtx_reset(s->zs, ZSTD_reset_session_only)) ? DEC_NOMEM : DEC_OK;
}

/* ---------------- the stack ---------------- */

static enum dec_status feed_stage(struct decoder *d, unsigned i, const char *in, size_t len)
{
    struct stage *s = &d->stage[i];
    s->fed = true;
    switch (s->coding) {
    case C_IDENTITY:
        return pass_on(d, i, in, len);
    case C_DEFLATE:
    case C_GZIP:
        return zlib_feed(d, i, in, len);
    case C_BR:
        return brotli_feed(d, i, in, len);
    case C_ZSTD:
        return zstd_feed(d, i, in, len);
    default:
        return DEC_BAD; /* libcurl: "Unrecognized content encoding type" */
    }
}

static enum dec_status setup_stage(struct stage *s, enum coding c)
{
    s->coding = c;
    s->fed = s->ended = false;
    switch (c) {
    case C_DEFLATE:
    case C_GZIP:
        return zlib_setup(s);
    case C_BR:
        return brotli_setup(s);
    case C_ZSTD:
        return zstd_setup(s);
    default:
        return DEC_OK;
    }
}

/* The order of decoding: the codings applied last come off first, and
 * transfer codings (applied over the content's) before content codings. */
static enum dec_status setup(struct decoder *d)
{
    d->set_up = true;
    d->nstages = 0;
    for (unsigned k = d->ntransfer; k-- > 0;) {
        enum dec_status st = setup_stage(&d->stage[d->nstages++], d->transfer[k]);
        if (st != DEC_OK)
            return st;
    }
    for (unsigned k = d->ncontent; k-- > 0;) {
        enum dec_status st = setup_stage(&d->stage[d->nstages++], d->content[k]);
        if (st != DEC_OK)
            return st;
    }
    return DEC_OK;
}

enum dec_status decoder_feed(struct decoder *d, const char *in, size_t len, struct buf *out, size_t max,
                             bool *dropped)
{
    if (d->failed)
        return DEC_BAD;
    if (len == 0)
        return DEC_OK; /* libcurl passes no empty writes to its decoders */
    enum dec_status st = d->set_up ? DEC_OK : setup(d);
    d->out = out;
    d->max = max;
    d->dropped = dropped;
    while (st == DEC_OK && len) {
        size_t n = len < ZLIB_PIECE ? len : ZLIB_PIECE; /* zlib counts in uInt */
        st = d->nstages ? feed_stage(d, 0, in, n) : deliver(d, in, n);
        in += n;
        len -= n;
    }
    d->out = NULL;
    d->failed = st != DEC_OK;
    return st;
}

/* What a large body made the libraries grow is not kept for the next
 * response: thousands of users each holding a window's worth would cost
 * far more memory than making it again costs time next to decoding it. */
static void shrink(struct stage *s)
{
    br_end(s);
    if (s->zs && ZSTD_sizeof_DStream(s->zs) > KEEP_MAX) {
        ZSTD_freeDStream(s->zs);
        s->zs = NULL;
    }
}

enum dec_status decoder_end(struct decoder *d)
{
    enum dec_status st = DEC_OK;
    for (unsigned i = 0; i < d->nstages; i++) {
        struct stage *s = &d->stage[i];
        bool streams = s->coding != C_IDENTITY && s->coding != C_UNKNOWN;
        if (streams && s->fed && !s->ended)
            st = DEC_INCOMPLETE;
        shrink(s);
    }
    return st;
}
