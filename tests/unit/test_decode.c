/* The body decoder (decode.c) against bodies compressed here with zlib's,
 * brotli's and zstd's own encoders: round trips whole and byte by byte,
 * max_body, stacks, names, and the corrupt, cut and over-long streams,
 * each answered as libcurl 7.88 answers it. */
#include "check.h"
#include "decode.h"

#include <brotli/encode.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* ---------------- bodies ---------------- */

/* Text-like bytes (compressible, not trivially) with a stretch of noise. */
static struct buf text(size_t n, unsigned seed)
{
    static const char *const words[] = {"load ", "test ", "tide ", "users ", "latency ", "p99 ", "\n"};
    struct buf b = {0};
    uint32_t x = seed * 2654435761u + 1;
    while (b.len < n) {
        x = x * 1103515245u + 12345u;
        if ((x >> 16) % 50 == 0) {
            char noise[16];
            uint32_t y = x;
            for (size_t i = 0; i < sizeof noise; i++)
                noise[i] = (char)((y = y * 69069u + 1u) >> 24);
            buf_append(&b, noise, sizeof noise);
        } else {
            const char *w = words[(x >> 16) % 7];
            buf_append(&b, w, strlen(w));
        }
    }
    b.len = n;
    return b;
}

/* bits: 15 + 16 gzip, 15 zlib, -15 raw deflate. */
static struct buf zlib_encode(const char *p, size_t n, int bits)
{
    z_stream z = {0};
    struct buf out = {0};
    deflateInit2(&z, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY);
    buf_reserve(&out, deflateBound(&z, n) + 32);
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out.data;
    z.avail_out = (uInt)out.cap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.len = z.total_out;
    deflateEnd(&z);
    return out;
}

static struct buf gzip_of(const struct buf *b) { return zlib_encode(b->data, b->len, MAX_WBITS + 16); }
static struct buf zlib_of(const struct buf *b) { return zlib_encode(b->data, b->len, MAX_WBITS); }
static struct buf raw_of(const struct buf *b) { return zlib_encode(b->data, b->len, -MAX_WBITS); }

static struct buf br_of(const struct buf *b)
{
    struct buf out = {0};
    size_t n = BrotliEncoderMaxCompressedSize(b->len);
    buf_reserve(&out, n);
    CHECK(BrotliEncoderCompress(5, 22, BROTLI_MODE_GENERIC, b->len, (const uint8_t *)b->data, &n,
                                (uint8_t *)out.data));
    out.len = n;
    return out;
}

static struct buf zstd_of(const struct buf *b)
{
    struct buf out = {0};
    buf_reserve(&out, ZSTD_compressBound(b->len));
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1); /* as the zstd tool writes, so damage shows */
    out.len = ZSTD_compress2(c, out.data, out.cap, b->data, b->len);
    CHECK(!ZSTD_isError(out.len));
    ZSTD_freeCCtx(c);
    return out;
}

static struct buf joined(const struct buf *a, const char *p, size_t n)
{
    struct buf out = {0};
    buf_append(&out, a->data, a->len);
    buf_append(&out, p, n);
    return out;
}

static bool same(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool is_prefix(const struct buf *part, const struct buf *whole)
{
    return part->len <= whole->len && (part->len == 0 || memcmp(part->data, whole->data, part->len) == 0);
}

/* ---------------- one response through a decoder ---------------- */

struct result {
    enum dec_status feed;   /* the first error of a feed, else DEC_OK */
    enum dec_status end;
    struct buf body;
    bool dropped;
};

/* body fed in pieces of `step` bytes (0: all at once) with `coding` as the
 * Content-Encoding, keeping up to max bytes. */
static struct result run_on(struct decoder *d, const char *coding, const struct buf *body, size_t step, size_t max)
{
    struct result r = {DEC_OK, DEC_OK, {0}, false};
    decoder_begin(d);
    r.feed = decoder_add(d, coding, strlen(coding), false);
    for (size_t at = 0; r.feed == DEC_OK && at < body->len;) {
        size_t n = step && body->len - at > step ? step : body->len - at;
        r.feed = decoder_feed(d, body->data + at, n, &r.body, max, &r.dropped);
        at += n;
    }
    r.end = decoder_end(d);
    return r;
}

static struct result run(const char *coding, const struct buf *body, size_t step, size_t max)
{
    struct decoder *d = decoder_new();
    struct result r = run_on(d, coding, body, step, max);
    decoder_free(d);
    return r;
}

static bool decodes_to(const char *coding, const struct buf *body, size_t step, const struct buf *want)
{
    struct result r = run(coding, body, step, SIZE_MAX);
    bool ok = CHECK(r.feed == DEC_OK) && CHECK(r.end == DEC_OK) && CHECK(same(&r.body, want)) && CHECK(!r.dropped);
    if (!ok)
        fprintf(stderr, "  %s, %zu bytes in steps of %zu: status %d/%d, %zu bytes out of %zu\n", coding, body->len,
                step, r.feed, r.end, r.body.len, want->len);
    buf_free(&r.body);
    return ok;
}

/* ---------------- tests ---------------- */

/* Every coding, whole and in pieces down to one byte, small and larger than
 * the decoding buffer; the names as servers spell them. */
static void test_round_trips(void)
{
    static const size_t sizes[] = {1, 100, 65536, 70000, 300000}; /* 65536: ends as the output buffer fills */
    static const size_t steps[] = {0, 1, 7, 4096};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct buf t = text(sizes[k], (unsigned)k);
        struct buf enc[] = {gzip_of(&t), zlib_of(&t), raw_of(&t), br_of(&t), zstd_of(&t), t};
        const char *names[] = {"gzip", "deflate", "deflate", "br", "zstd", "identity"};
        for (size_t c = 0; c < 6; c++) {
            for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++)
                if (steps[s] != 1 || enc[c].len < 100000)
                    decodes_to(names[c], &enc[c], steps[s], &t);
            if (c < 5)
                buf_free(&enc[c]);
        }
        buf_free(&t);
    }
    struct buf t = text(5000, 9), g = gzip_of(&t), z = zlib_of(&t), b = br_of(&t), s = zstd_of(&t);
    decodes_to("GZip", &g, 0, &t);
    decodes_to("x-gzip", &g, 0, &t);
    decodes_to("  gzip \t", &g, 0, &t);
    decodes_to(", ,gzip,,", &g, 0, &t);
    decodes_to("BR", &b, 0, &t);
    decodes_to("ZSTD", &s, 3, &t);
    decodes_to("None", &t, 0, &t);
    decodes_to("", &t, 0, &t);
    decodes_to("gzip", &z, 1, &t); /* zlib's gzip mode takes a zlib-wrapped body too, as libcurl does */
    buf_free(&t), buf_free(&g), buf_free(&z), buf_free(&b), buf_free(&s);
}

/* An empty body: nothing decoded, no error, whatever the coding (an
 * unknown one included), as libcurl passes no bytes to its decoders. */
static void test_empty_body(void)
{
    struct buf empty = {0};
    const char *codings[] = {"gzip", "deflate", "br", "zstd", "identity", "compress", "gzip, br"};
    for (size_t i = 0; i < sizeof codings / sizeof codings[0]; i++)
        decodes_to(codings[i], &empty, 0, &empty);
}

/* max counts decoded bytes in the body buffer: the rest is decoded (errors
 * still found) and dropped, and dropped says so; no out keeps nothing and
 * says nothing. */
static void test_max_and_dropped(void)
{
    struct buf t = text(100000, 3), g = gzip_of(&t), s = zstd_of(&t);
    const size_t maxes[] = {0, 1, 999, 16384, 16385, 99999, 100000, 100001};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
        for (size_t step = 0; step <= 1; step++) {
            struct result r = run("gzip", &g, step ? 13 : 0, maxes[i]);
            size_t want = maxes[i] < t.len ? maxes[i] : t.len;
            if (!(CHECK(r.feed == DEC_OK && r.end == DEC_OK) && CHECK(r.body.len == want) &&
                  CHECK(is_prefix(&r.body, &t)) && CHECK(r.dropped == (maxes[i] < t.len))))
                fprintf(stderr, "  max %zu: %zu bytes, dropped %d\n", maxes[i], r.body.len, r.dropped);
            buf_free(&r.body);
        }
    /* the body buffer may hold bytes already: max is its total */
    struct decoder *d = decoder_new();
    struct buf out = {0};
    buf_append(&out, "0123456789", 10);
    bool dropped = false;
    decoder_begin(d);
    decoder_add(d, "zstd", 4, false);
    CHECK(decoder_feed(d, s.data, s.len, &out, 30, &dropped) == DEC_OK);
    CHECK(out.len == 30 && memcmp(out.data, "0123456789", 10) == 0 && memcmp(out.data + 10, t.data, 20) == 0);
    CHECK(dropped);
    /* no buffer: decoded, checked, nothing kept, dropped left alone */
    dropped = false;
    decoder_begin(d);
    decoder_add(d, "gzip", 4, false);
    CHECK(decoder_feed(d, g.data, g.len, NULL, 0, &dropped) == DEC_OK && decoder_end(d) == DEC_OK && !dropped);
    g.data[g.len / 2] ^= 0x55;
    decoder_begin(d);
    decoder_add(d, "gzip", 4, false);
    enum dec_status st = decoder_feed(d, g.data, g.len, NULL, 0, &dropped);
    CHECK(st == DEC_BAD && !dropped);
    decoder_free(d);
    buf_free(&out), buf_free(&t), buf_free(&g), buf_free(&s);
}

/* Corrupt data is libcurl's CURLE_BAD_CONTENT_ENCODING ("malformed
 * response" in tide), whole or fed byte by byte (found by the checksums of
 * gzip, zlib and zstd, by brotli when the damage breaks its format); later
 * feeds fail too. */
static void test_corrupt(void)
{
    struct buf t = text(50000, 4);
    struct buf enc[] = {gzip_of(&t), zlib_of(&t), br_of(&t), zstd_of(&t)};
    const char *names[] = {"gzip", "deflate", "br", "zstd"};
    for (size_t c = 0; c < 4; c++) {
        for (size_t step = 0; step <= 1; step++) {
            struct buf bad = joined(&enc[c], "", 0);
            size_t from = c == 2 ? 2 : bad.len / 3; /* brotli has no checksum: damage its header */
            for (size_t i = from; i < from + 40; i++)
                bad.data[i] = (char)0xff;
            struct result r = run(names[c], &bad, step, SIZE_MAX);
            if (!CHECK(r.feed == DEC_BAD))
                fprintf(stderr, "  %s corrupt: status %d, %zu bytes\n", names[c], r.feed, r.body.len);
            buf_free(&r.body);
            buf_free(&bad);
        }
    }
    /* not a gzip header at all, and what libcurl's deflate cannot read either way */
    struct buf junk = {0};
    buf_append(&junk, "this is not compressed at all", 29);
    for (size_t c = 0; c < 4; c++) {
        struct result r = run(names[c], &junk, 0, SIZE_MAX);
        if (!CHECK(r.feed == DEC_BAD && r.body.len == 0))
            fprintf(stderr, "  %s of plain text: status %d\n", names[c], r.feed);
        buf_free(&r.body);
    }
    /* after an error, the response stays failed */
    struct decoder *d = decoder_new();
    bool dropped = false;
    struct buf out = {0};
    decoder_begin(d);
    decoder_add(d, "gzip", 4, false);
    CHECK(decoder_feed(d, junk.data, junk.len, &out, SIZE_MAX, &dropped) == DEC_BAD);
    CHECK(decoder_feed(d, enc[0].data, enc[0].len, &out, SIZE_MAX, &dropped) == DEC_BAD);
    decoder_free(d);
    for (size_t c = 0; c < 4; c++)
        buf_free(&enc[c]);
    buf_free(&junk), buf_free(&t), buf_free(&out);
}

/* A stream cut short: every feed is fine and the body is what could be
 * decoded (libcurl 7.88 says nothing); decoder_end tells. */
static void test_truncated(void)
{
    struct buf t = text(60000, 5);
    struct buf enc[] = {gzip_of(&t), zlib_of(&t), raw_of(&t), br_of(&t), zstd_of(&t)};
    const char *names[] = {"gzip", "deflate", "deflate", "br", "zstd"};
    for (size_t c = 0; c < 5; c++) {
        size_t cuts[] = {1, enc[c].len / 2, enc[c].len - 1};
        for (size_t k = 0; k < 3; k++) {
            struct buf part = {0};
            buf_append(&part, enc[c].data, cuts[k]);
            struct result r = run(names[c], &part, k == 1 ? 1 : 0, SIZE_MAX);
            if (!(CHECK(r.feed == DEC_OK) && CHECK(r.end == DEC_INCOMPLETE) && CHECK(is_prefix(&r.body, &t))))
                fprintf(stderr, "  %s cut at %zu of %zu: status %d/%d, %zu bytes\n", names[c], cuts[k],
                        enc[c].len, r.feed, r.end, r.body.len);
            buf_free(&r.body);
            buf_free(&part);
        }
        buf_free(&enc[c]);
    }
    buf_free(&t);
}

/* After the end of a stream: libcurl 7.88 rejects any byte for gzip (a
 * second member included), zlib-wrapped deflate and br, lets 4 follow raw
 * deflate, and zstd reads on: further frames, or garbage as corrupt. */
static void test_after_the_end(void)
{
    struct buf a = text(3000, 6), b = text(2000, 7), ab = joined(&a, b.data, b.len);
    struct buf ga = gzip_of(&a), gb = gzip_of(&b), za = zlib_of(&a), ra = raw_of(&a), ba = br_of(&a);
    struct buf sa = zstd_of(&a), sb = zstd_of(&b);
    for (size_t step = 0; step <= 1; step++) {
        struct buf two = joined(&ga, gb.data, gb.len);
        struct result r = run("gzip", &two, step, SIZE_MAX);
        CHECK(r.feed == DEC_REJECTED && same(&r.body, &a));
        buf_free(&r.body), buf_free(&two);

        struct buf x = joined(&ga, "xx", 2);
        r = run("gzip", &x, step, SIZE_MAX);
        CHECK(r.feed == DEC_REJECTED && same(&r.body, &a));
        buf_free(&r.body), buf_free(&x);

        x = joined(&za, "x", 1);
        r = run("deflate", &x, step, SIZE_MAX);
        CHECK(r.feed == DEC_REJECTED && same(&r.body, &a));
        buf_free(&r.body), buf_free(&x);

        x = joined(&ra, "abcd", 4);
        decodes_to("deflate", &x, step, &a);
        buf_free(&x);
        x = joined(&ra, "abcde", 5);
        r = run("deflate", &x, step, SIZE_MAX);
        CHECK(r.feed == DEC_REJECTED && same(&r.body, &a));
        buf_free(&r.body), buf_free(&x);

        x = joined(&ba, "x", 1);
        r = run("br", &x, step, SIZE_MAX);
        CHECK(r.feed == DEC_REJECTED && same(&r.body, &a));
        buf_free(&r.body), buf_free(&x);

        x = joined(&sa, sb.data, sb.len);
        decodes_to("zstd", &x, step, &ab);
        buf_free(&x);
        x = joined(&sa, "garbage!", 8);
        r = run("zstd", &x, step, SIZE_MAX);
        CHECK(r.feed == DEC_BAD && same(&r.body, &a));
        buf_free(&r.body), buf_free(&x);
    }
    buf_free(&a), buf_free(&b), buf_free(&ab), buf_free(&ga), buf_free(&gb), buf_free(&za), buf_free(&ra);
    buf_free(&ba), buf_free(&sa), buf_free(&sb);
}

/* "gzip, br": br was applied last and comes off first; several header
 * lines add up as one list; transfer codings come off before content
 * codings whatever the order of the lines. */
static void test_stacked(void)
{
    struct buf t = text(40000, 8), g = gzip_of(&t), bg = br_of(&g), zbg = zstd_of(&bg);
    for (size_t step = 0; step <= 1; step++) {
        decodes_to("gzip, br", &bg, step, &t);
        decodes_to("gzip,br,zstd", &zbg, step, &t);
        decodes_to("identity, gzip, identity, br, identity", &bg, step, &t);
    }
    struct result r = run("br, gzip", &bg, 0, SIZE_MAX);
    CHECK(r.feed == DEC_BAD);
    buf_free(&r.body);

    struct decoder *d = decoder_new();
    for (int order = 0; order < 2; order++) {
        struct buf out = {0};
        bool dropped = false;
        decoder_begin(d);
        /* Content-Encoding: gzip / Content-Encoding: br / Transfer-Encoding: zstd, chunked */
        if (order)
            CHECK(decoder_add(d, "zstd, chunked", 13, true) == DEC_OK);
        CHECK(decoder_add(d, "gzip", 4, false) == DEC_OK);
        CHECK(decoder_add(d, "br", 2, false) == DEC_OK);
        if (!order)
            CHECK(decoder_add(d, "zstd, chunked", 13, true) == DEC_OK);
        CHECK(decoder_active(d));
        for (size_t i = 0; i < zbg.len; i += 5)
            CHECK(decoder_feed(d, zbg.data + i, zbg.len - i < 5 ? zbg.len - i : 5, &out, 1000, &dropped) == DEC_OK);
        CHECK(decoder_end(d) == DEC_OK && out.len == 1000 && is_prefix(&out, &t) && dropped);
        buf_free(&out);
    }
    decoder_free(d);
    buf_free(&t), buf_free(&g), buf_free(&bg), buf_free(&zbg);
}

/* An unknown coding decodes nothing: its first byte is libcurl's
 * "Unrecognized content encoding type" (CURLE_BAD_CONTENT_ENCODING); it
 * fails only once bytes reach it through the codings above it. */
static void test_unknown(void)
{
    struct buf t = text(1000, 10), g = gzip_of(&t);
    const char *unknown[] = {"compress", "x-compress", "gz ip", "gzip2", "chunked", "gzip, compress"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        struct result r = run(unknown[i], &t, 0, SIZE_MAX);
        if (!CHECK(r.feed == DEC_BAD && r.body.len == 0))
            fprintf(stderr, "  %s: status %d\n", unknown[i], r.feed);
        buf_free(&r.body);
    }
    struct result r = run("compress, gzip", &g, 1, SIZE_MAX);
    CHECK(r.feed == DEC_BAD && r.body.len == 0);
    buf_free(&r.body);
    struct decoder *d = decoder_new();
    decoder_begin(d);
    CHECK(decoder_add(d, "compress", 8, false) == DEC_OK && decoder_active(d));
    decoder_begin(d);
    CHECK(decoder_add(d, "identity", 8, false) == DEC_OK && !decoder_active(d));
    decoder_free(d);
    buf_free(&t), buf_free(&g);
}

/* Five codings at most, counted over every line, identity and unknown
 * ones included, "chunked" not: the sixth rejects the response. */
static void test_too_many(void)
{
    struct buf t = text(100, 11);
    decodes_to("identity, identity, none, identity, identity", &t, 0, &t);
    struct decoder *d = decoder_new();
    decoder_begin(d);
    CHECK(decoder_add(d, "identity, identity, none, identity, identity, identity", 54, false) == DEC_BAD);
    decoder_begin(d);
    CHECK(decoder_add(d, "gzip, br, zstd", 14, false) == DEC_OK);
    CHECK(decoder_add(d, "chunked, foo, chunked", 21, true) == DEC_OK);
    CHECK(decoder_add(d, "deflate", 7, false) == DEC_OK);
    CHECK(decoder_add(d, ",", 1, false) == DEC_OK);
    CHECK(decoder_add(d, "identity", 8, true) == DEC_BAD);
    decoder_free(d);
    buf_free(&t);
}

/* One decoder for response after response: the coding changes, repeats,
 * and a response cut short or corrupt leaves nothing behind; trimmed, it
 * starts afresh. */
static void test_reuse(void)
{
    struct buf t = text(30000, 12), u = text(20000, 13), big = text(1 << 20, 14);
    struct buf g = gzip_of(&t), z = zlib_of(&u), r = raw_of(&t), b = br_of(&u), s = zstd_of(&t);
    struct buf bigs = zstd_of(&big), bigb = br_of(&big); /* their large buffers are not kept */
    struct buf half = {0};
    buf_append(&half, g.data, g.len / 2);
    struct decoder *d = decoder_new();
    for (int round = 0; round < 3; round++) {
        struct result x = run_on(d, "gzip", &half, 0, SIZE_MAX);
        CHECK(x.feed == DEC_OK && x.end == DEC_INCOMPLETE);
        buf_free(&x.body);
        const struct {
            const char *coding;
            struct buf *in, *want;
        } seq[] = {{"gzip", &g, &t}, {"deflate", &z, &u}, {"deflate", &r, &t}, {"gzip", &g, &t},
                   {"br", &b, &u},   {"zstd", &s, &t},    {"br", &b, &u},      {"zstd", &s, &t},
                   {"zstd", &bigs, &big}, {"zstd", &s, &t}, {"br", &bigb, &big}, {"br", &b, &u},
                   {"identity", &u, &u}};
        for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
            x = run_on(d, seq[i].coding, seq[i].in, round == 1 ? 997 : 0, SIZE_MAX);
            if (!CHECK(x.feed == DEC_OK && x.end == DEC_OK && same(&x.body, seq[i].want)))
                fprintf(stderr, "  round %d, %s: status %d/%d\n", round, seq[i].coding, x.feed, x.end);
            buf_free(&x.body);
        }
        x = run_on(d, "zstd", &g, 0, SIZE_MAX); /* the wrong coding */
        CHECK(x.feed == DEC_BAD);
        buf_free(&x.body);
    }
    /* trimmed: the libraries' memory given back, made again for the next response */
    decoder_trim(d);
    struct result x = run_on(d, "br", &b, 0, SIZE_MAX);
    CHECK(x.feed == DEC_OK && x.end == DEC_OK && same(&x.body, &u));
    buf_free(&x.body);
    decoder_begin(d);
    decoder_add(d, "gzip", 4, false);
    bool dropped = false;
    CHECK(decoder_feed(d, half.data, half.len, &x.body, SIZE_MAX, &dropped) == DEC_OK);
    decoder_trim(d);
    CHECK(decoder_feed(d, half.data, half.len, &x.body, SIZE_MAX, &dropped) == DEC_BAD);
    buf_free(&x.body);
    x = run_on(d, "gzip", &g, 1, SIZE_MAX);
    CHECK(x.feed == DEC_OK && x.end == DEC_OK && same(&x.body, &t));
    buf_free(&x.body);
    decoder_free(d);
    decoder_free(NULL);
    buf_free(&t), buf_free(&u), buf_free(&g), buf_free(&z), buf_free(&r), buf_free(&b), buf_free(&s);
    buf_free(&half), buf_free(&big), buf_free(&bigs), buf_free(&bigb);
}

/* What libcurl sends for compression on: the codings it was built with, in
 * the order of its table (lib/content_encoding.c). */
static void test_accept(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    char want[64] = "";
    if (v->features & CURL_VERSION_LIBZ)
        strcat(want, "deflate, gzip");
    if (v->features & CURL_VERSION_BROTLI)
        strcat(want, ", br");
    if (v->features & CURL_VERSION_ZSTD)
        strcat(want, ", zstd");
    if (!CHECK(strcmp(DECODE_ACCEPT, want) == 0))
        fprintf(stderr, "  libcurl %s sends \"%s\"\n", v->version, want);
}

int main(void)
{
    test_accept();
    test_round_trips();
    test_empty_body();
    test_max_and_dropped();
    test_corrupt();
    test_truncated();
    test_after_the_end();
    test_stacked();
    test_unknown();
    test_too_many();
    test_reuse();
    return check_report("test_decode");
}
