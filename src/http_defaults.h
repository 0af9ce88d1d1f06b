#ifndef TIDE_HTTP_DEFAULTS_H
#define TIDE_HTTP_DEFAULTS_H
/* What every tide.http request of a run takes unless it says otherwise: the
 * scenario's options (compression, insecure, ca, cert, key, expect) and the
 * command line (--no-compression, --insecure, --ca). All zero: tide's own
 * defaults (compression on, certificates verified, status < 400 expected). */
#include <stdbool.h>

#define HTTP_PATH_MAX 1024
#define MAX_EXPECT 32

struct http_defaults {
    bool no_compression;
    bool insecure;
    char ca[HTTP_PATH_MAX], cert[HTTP_PATH_MAX], key[HTTP_PATH_MAX];   /* "": none */
    int expect[MAX_EXPECT];     /* the statuses that are a success; nexpect 0: below 400 */
    int nexpect;
    /* --http-engine curl, options.http_engine = "curl" or TIDE_HTTP_ENGINE=curl:
     * libcurl carries every request; false ("auto"): plain-HTTP/1.1 requests
     * take the lean transport (h1_transport.c) */
    bool engine_curl;
    bool paths_checked;         /* ca, cert, key made absolute and found readable (once per thread) */
};

#endif
