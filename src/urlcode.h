/* SPDX-License-Identifier: MIT */
#ifndef RILL_URLCODE_H
#define RILL_URLCODE_H
#include <stddef.h>
#include <sys/types.h>

enum {
    RILL_URL_PLUS = 1,   /* '+' decodes to a space (query strings) */
    RILL_URL_STRICT = 2, /* a malformed %XX is an error rather than kept literally */
};

/*
 * Decodes percent escapes of src[0..len) into dst, which must hold len bytes
 * (decoding never grows). Returns the decoded length, or -1 when RILL_URL_STRICT
 * is set and an escape is malformed. The output may contain NUL bytes: callers
 * that need C strings must check for them.
 */
ssize_t rill_url_decode(char *dst, const char *src, size_t len, int flags);

/* The value of a hex digit, or -1. */
int rill_hexval(int c);
/* n bytes as 2n lower-case hex digits into out (not ended: out needs 2n bytes). */
void rill_hex_lower(char *out, const unsigned char *in, size_t n);

/*
 * Calls pair() for each '&'-separated item of a query string, undecoded.
 * has_value is 0 for an item with no '=' ("?flag"). Empty items are skipped.
 */
typedef void (*rill_query_pair_fn)(const char *key, size_t klen, const char *val, size_t vlen,
                                   int has_value, void *arg);
void rill_query_split(const char *query, size_t len, rill_query_pair_fn pair, void *arg);

#endif
