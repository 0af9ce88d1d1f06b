#ifndef TIDE_DECODE_H
#define TIDE_DECODE_H
/* Streaming decoder of HTTP response bodies (Content-Encoding and
 * Transfer-Encoding codings) for tide's own HTTP/1.1 transport, behaving as
 * libcurl 7.88 does where a script can see it (r.body, r.error,
 * r.truncated):
 *
 * - codings: identity (alias none), deflate (zlib-wrapped; raw deflate when
 *   the zlib header is not there, with up to 4 stray bytes after it), gzip
 *   (alias x-gzip; a zlib-wrapped body is accepted too), br, zstd (any
 *   number of frames); names case-insensitive;
 * - a list ("gzip, br", or several header lines) is decoded last coding
 *   first; transfer codings are decoded before content codings;
 * - more than 5 codings in all (identity and unknown ones included) reject
 *   the response as its head is read;
 * - an unknown coding passes nothing: the first body byte is an error (an
 *   empty body is not);
 * - a stream cut short is not an error (libcurl 7.88 keeps what it decoded
 *   and says nothing): decoder_end tells, for the caller to ignore;
 * - bytes after the end of a gzip, deflate or br stream (a second gzip
 *   member too) are rejected (zstd reads further frames).
 *
 * One decoder per response under way, made on the first response that
 * needs one and reused: a repeated coding allocates nothing for bodies up
 * to about 64 KB (brotli) or 256 KB of zstd window; larger bodies make
 * their big buffers again (decoder_end). */
#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

/* What libcurl 7.88 sends for CURLOPT_ACCEPT_ENCODING "" here (zlib,
 * brotli and zstd built in), byte for byte. */
#define DECODE_ACCEPT "deflate, gzip, br, zstd"

/* libcurl's MAX_ENCODE_STACK. */
#define DECODE_MAX_CODINGS 5

enum dec_status {
    DEC_OK,
    /* Corrupt data, an unknown coding with body bytes, more than
     * DECODE_MAX_CODINGS codings: libcurl's CURLE_BAD_CONTENT_ENCODING,
     * which tide reports as "malformed response". */
    DEC_BAD,
    /* Bytes after the end of a gzip/deflate/br stream (a second gzip
     * member), and brotli's two format errors libcurl does not list
     * (reserved bits, distance): libcurl 7.88's CURLE_WRITE_ERROR, which
     * both transports report as "malformed response". */
    DEC_REJECTED,
    DEC_NOMEM,
    /* decoder_end only: a stream stopped before its end. libcurl 7.88
     * reports nothing for it (the body is what was decoded). */
    DEC_INCOMPLETE,
};

struct decoder;

/* A decoder with no coding (NULL when out of memory). Small: the
 * libraries' states and buffers are made when first needed. */
struct decoder *decoder_new(void);
void decoder_free(struct decoder *d);

/* Gives back the memory the libraries hold between responses (zlib's
 * state and window, ~40 KB; zstd's context and buffers, ~100 KB and up to
 * the window; brotli's kept blocks), e.g. for a user that goes idle. The
 * response under way, if any, cannot be fed further. */
void decoder_trim(struct decoder *d);

/* A new response: no codings yet. */
void decoder_begin(struct decoder *d);

/* One header line's value as received (value[0..len), a list such as
 * "gzip, br", blanks and empty items allowed). transfer: a
 * Transfer-Encoding value, whose "chunked" the caller deframes (skipped
 * here). DEC_BAD when the codings now exceed DECODE_MAX_CODINGS (libcurl
 * then gives up on the response before its status is known). Unknown
 * names are accepted here and fail at the first body byte. */
enum dec_status decoder_add(struct decoder *d, const char *value, size_t len, bool transfer);

/* Whether the body needs decoder_feed: some coding other than identity. */
bool decoder_active(const struct decoder *d);

/* The next len bytes of the body as received (after chunked deframing).
 * Decoded bytes are appended to out while out->len < max; the rest is
 * decoded and dropped, and *dropped set. out NULL: decode and keep nothing
 * (checks the body as libcurl does for a discarded one; *dropped is left
 * alone). On an error, out keeps what was decoded before it; feeding more
 * after an error is an error. */
enum dec_status decoder_feed(struct decoder *d, const char *in, size_t len, struct buf *out, size_t max,
                             bool *dropped);

/* The body ended (or the response failed): call it for every response
 * that was fed. DEC_INCOMPLETE when a stream that had begun was cut short,
 * else DEC_OK: informative only (see DEC_INCOMPLETE). Gives back what a
 * large body made the libraries grow (a brotli state, a zstd context over
 * 256 KB), so a decoder holds about 25-80 KB between responses (gzip,
 * deflate, br) or 20-260 KB (zstd; 115 KB after a small body). */
enum dec_status decoder_end(struct decoder *d);

#endif
