/* SPDX-License-Identifier: MIT */
#include "urlcode.h"

#include <stdint.h>
#if defined(__SSE2__) && defined(__x86_64__)
#define RILL_HEX_SSE2 1
#include <emmintrin.h>
#endif

#include <string.h>

int rill_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t rill_url_decode(char *dst, const char *src, size_t len, int flags)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '+' && (flags & RILL_URL_PLUS)) {
            dst[o++] = ' ';
            continue;
        }
        if (c != '%') {
            dst[o++] = c;
            continue;
        }
        int hi = i + 2 < len ? rill_hexval(src[i + 1]) : -1; /* two bytes must follow */
        int lo = hi >= 0 ? rill_hexval(src[i + 2]) : -1;
        if (lo < 0) {
            if (flags & RILL_URL_STRICT)
                return -1;
            dst[o++] = c; /* keep a malformed escape as it was, like nginx */
            continue;
        }
        dst[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (ssize_t)o;
}

void rill_query_split(const char *query, size_t len, rill_query_pair_fn pair, void *arg)
{
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *item_end = amp ? amp : end;
        if (item_end > p) {
            const char *eq = memchr(p, '=', (size_t)(item_end - p));
            if (eq)
                pair(p, (size_t)(eq - p), eq + 1, (size_t)(item_end - eq - 1), 1, arg);
            else
                pair(p, (size_t)(item_end - p), "", 0, 0, arg);
        }
        p = item_end + 1;
    }
}

/*
 * Eight bytes at a time where SSE2 is (every x86-64): each nibble turned
 * into its digit in a 64-bit word (a digit past 9 gets the 39 that takes
 * ':' to 'a'), the high and low nibbles' digits interleaved by one unpack.
 * A request id costs a handful of instructions a byte less than a table.
 */
#define HEX_DIGITS(n)                                                                              \
    ((n) + 0x3030303030303030ull +                                                                 \
     ((((n) + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull) * 39)

void rill_hex_lower(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i = 0;
#ifdef RILL_HEX_SSE2
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, in + i, 8); /* byte 0 lowest: _mm_unpacklo_epi8 keeps that order */
        uint64_t hi = HEX_DIGITS((x >> 4) & 0x0f0f0f0f0f0f0f0full);
        uint64_t lo = HEX_DIGITS(x & 0x0f0f0f0f0f0f0f0full);
        __m128i text =
            _mm_unpacklo_epi8(_mm_cvtsi64_si128((long long)hi), _mm_cvtsi64_si128((long long)lo));
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i), text);
    }
#endif
    for (; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}
