/* What a script needs without a C compiler: base64, digests and HMACs
 * (OpenSSL's libcrypto, which libcurl links anyway), UUIDs and random
 * strings from the kernel's CSPRNG. Part of the `tide` module. */
#include "crypto_lua.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#define RANDOM_STRING_MAX (1 << 30)
#define DEFAULT_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* ---------------- base64 (RFC 4648) ---------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int l_b64encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

/* A base64 digit's value (both alphabets: + / and - _), -1 for none. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

static int decode_fail(lua_State *L, const char *why, size_t at)
{
    lua_pushnil(L);
    lua_pushfstring(L, "tide.b64decode: %s at byte %I", why, (lua_Integer)at + 1);
    return 2;
}

/* Bad input is data (often a server's), not a script error: nil and why. */
static int l_b64decode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
    size_t o = 0, digits = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0)
            return decode_fail(L, "not a base64 character", i);
        if (pad)
            return decode_fail(L, "data after '=' padding", i);
        acc = acc << 6 | (uint32_t)v;
        if (++digits % 4 == 0) {
            out[o++] = (char)(acc >> 16);
            out[o++] = (char)(acc >> 8);
            out[o++] = (char)acc;
            acc = 0;
        }
    }
    size_t rest = digits % 4;
    if (rest == 1 || (pad && (rest + pad) % 4 != 0) || pad > 2)
        return decode_fail(L, "wrong length (truncated base64?)", n ? n - 1 : 0);
    if (rest == 2)
        out[o++] = (char)(acc >> 4);
    if (rest == 3) {
        out[o++] = (char)(acc >> 10);
        out[o++] = (char)(acc >> 2);
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

/* ---------------- digests ---------------- */

static void push_hex(lua_State *L, const unsigned char *d, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char buf[2 * EVP_MAX_MD_SIZE];
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = hex[d[i] >> 4];
        buf[2 * i + 1] = hex[d[i] & 15];
    }
    lua_pushlstring(L, buf, 2 * n);
}

static const EVP_MD *check_digest(lua_State *L, int arg, const char *fn)
{
    static const char *const names[] = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", NULL};
    const char *name = luaL_checkstring(L, arg);
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) {
            const EVP_MD *md = EVP_get_digestbyname(name);
            if (md)
                return md;
        }
    luaL_error(L, "%s: unknown algorithm '%s' (valid: md5, sha1, sha224, sha256, sha384, sha512)", fn, name);
    return NULL;
}

/* "hex" (default) or "raw" bytes, e.g. for base64url in a JWT. */
static void push_digest(lua_State *L, int arg, const char *fn, const unsigned char *d, size_t n)
{
    const char *enc = luaL_optstring(L, arg, "hex");
    if (strcmp(enc, "raw") == 0)
        lua_pushlstring(L, (const char *)d, n);
    else if (strcmp(enc, "hex") == 0)
        push_hex(L, d, n);
    else
        luaL_error(L, "%s: unknown output '%s' (valid: hex, raw)", fn, enc);
}

static int l_hmac(lua_State *L)
{
    const EVP_MD *md = check_digest(L, 1, "tide.hmac");
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *data = luaL_checklstring(L, 3, &dlen);
    luaL_argcheck(L, klen <= INT_MAX, 2, "key too long");
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(md, key, (int)klen, (const unsigned char *)data, dlen, out, &n))
        return luaL_error(L, "tide.hmac: OpenSSL failed");
    push_digest(L, 4, "tide.hmac", out, n);
    return 1;
}

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
        return luaL_error(L, "tide.sha256: OpenSSL failed");
    push_digest(L, 2, "tide.sha256", out, n);
    return 1;
}

/* ---------------- randomness ---------------- */

static void random_bytes(lua_State *L, void *buf, size_t n, const char *fn)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            luaL_error(L, "%s: getrandom failed: %s", fn, strerror(errno));
        p += got;
        n -= (size_t)got;
    }
}

/* A version 4 UUID (RFC 9562): 122 random bits. */
static int l_uuid(lua_State *L)
{
    unsigned char u[16];
    random_bytes(L, u, sizeof u, "tide.uuid");
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char s[36];
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            s[o++] = '-';
        s[o++] = hex[u[i] >> 4];
        s[o++] = hex[u[i] & 15];
    }
    lua_pushlstring(L, s, sizeof s);
    return 1;
}

struct pool {
    uint32_t v[64];
    size_t left;
};

static uint32_t next_random(lua_State *L, struct pool *p)
{
    if (!p->left) {
        random_bytes(L, p->v, sizeof p->v, "tide.random_string");
        p->left = sizeof p->v / sizeof p->v[0];
    }
    return p->v[--p->left];
}

/* n characters drawn uniformly from alphabet (default: letters and digits). */
static int l_random_string(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    size_t m;
    const char *alphabet = luaL_optlstring(L, 2, DEFAULT_ALPHABET, &m);
    luaL_argcheck(L, n >= 0 && n <= RANDOM_STRING_MAX, 1, "length must be from 0 to 2^30");
    luaL_argcheck(L, m > 0, 2, "alphabet is empty");
    /* values at or past the last whole multiple of m would favour the first characters */
    uint32_t limit = UINT32_MAX - (uint32_t)(((uint64_t)UINT32_MAX + 1) % m);
    struct pool p = {.left = 0};
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (size_t)n);
    for (lua_Integer i = 0; i < n; i++) {
        uint32_t v;
        do
            v = next_random(L, &p);
        while (v > limit);
        out[i] = alphabet[v % m];
    }
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

void crypto_lua_add(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"b64encode", l_b64encode}, {"b64decode", l_b64decode}, {"hmac", l_hmac},
        {"sha256", l_sha256}, {"uuid", l_uuid}, {"random_string", l_random_string}, {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}
