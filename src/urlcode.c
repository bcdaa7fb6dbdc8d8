/* SPDX-License-Identifier: MIT */
#include "urlcode.h"

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
