/* SPDX-License-Identifier: MIT */
/* Unit tests for the URL decoding engine (ctest). */
#include "urlcode.h"

#include <stdio.h>

#include "check.h"
#include <string.h>

static void expect_decode(const char *in, int flags, const char *want, ssize_t want_len)
{
    char out[256];
    ssize_t n = rill_url_decode(out, in, strlen(in), flags);
    CHECK(n == want_len);
    if (n == want_len && n >= 0)
        CHECK(memcmp(out, want, (size_t)n) == 0);
}

static void test_decode(void)
{
    expect_decode("a%20b", 0, "a b", 3);
    expect_decode("a+b", 0, "a+b", 3);
    expect_decode("a+b", RILL_URL_PLUS, "a b", 3);
    expect_decode("%e2%82%AC", 0, "\xe2\x82\xac", 3);
    expect_decode("50%", 0, "50%", 3);             /* truncated escape kept */
    expect_decode("%4", 0, "%4", 2);               /* one hex digit kept */
    expect_decode("%zz", 0, "%zz", 3);             /* not hex: kept */
    expect_decode("%zz", RILL_URL_STRICT, "", -1); /* strict: refused */
    expect_decode("%4", RILL_URL_STRICT, "", -1);
    expect_decode("a%00b", 0, "a\0b", 3); /* NUL is decoded; callers check */
    expect_decode("", 0, "", 0);
}

struct pairs {
    char buf[512];
};

static void collect(const char *k, size_t kl, const char *v, size_t vl, int has_value, void *arg)
{
    struct pairs *p = arg;
    char item[128];
    snprintf(item, sizeof item, "[%.*s%s%.*s]", (int)kl, k, has_value ? "=" : "", (int)vl, v);
    strncat(p->buf, item, sizeof p->buf - strlen(p->buf) - 1);
}

static void expect_split(const char *q, const char *want)
{
    struct pairs p = {{0}};
    rill_query_split(q, strlen(q), collect, &p);
    if (strcmp(p.buf, want) != 0) {
        fprintf(stderr, "split(%s) = %s, want %s\n", q, p.buf, want);
        failures++;
    }
}

static void test_split(void)
{
    expect_split("a=1&b=2", "[a=1][b=2]");
    expect_split("a=1&&b", "[a=1][b]");
    expect_split("&", "");
    expect_split("a=&=b", "[a=][=b]");
    expect_split("x=1=2", "[x=1=2]");
    expect_split("", "");
}

/* rill_hex_lower against snprintf, at every length to 40 and every byte value. */
static void test_hex(void)
{
    unsigned char in[40];
    char got[81], want[81];
    for (int round = 0; round < 256; round++) {
        for (int i = 0; i < 40; i++)
            in[i] = (unsigned char)(round * 7 + i * 31 + (i == 5 ? round : 0));
        for (size_t n = 0; n <= 40; n++) {
            rill_hex_lower(got, in, n);
            for (size_t i = 0; i < n; i++)
                snprintf(want + 2 * i, 3, "%02x", in[i]);
            CHECK(memcmp(got, want, 2 * n) == 0);
        }
    }
    for (int b = 0; b < 256; b++) { /* each value in each position of an 8-byte word */
        memset(in, b, 16);
        rill_hex_lower(got, in, 16);
        snprintf(want, 3, "%02x", b);
        for (int i = 0; i < 16; i++)
            CHECK(got[2 * i] == want[0] && got[2 * i + 1] == want[1]);
    }
}

int main(void)
{
    test_decode();
    test_split();
    test_hex();
    return check_report();
}
