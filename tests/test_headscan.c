/* SPDX-License-Identifier: MIT */
/* Unit tests for the raw request head scanner (ctest). */
#include "headscan.h"

#include <string.h>

#include "check.h"

/* Scans s whole, then byte by byte: both must agree. Returns the status (200: a head). */
static int scan(const char *s, size_t max, size_t *used)
{
    struct rill_headscan h;
    size_t n = strlen(s), u = 0, total = 0;
    enum rill_headscan_result whole, piece = RILL_HEAD_MORE;
    rill_headscan_init(&h, max);
    whole = rill_headscan_feed(&h, s, n, used);
    int status = whole == RILL_HEAD_DONE ? 200 : whole == RILL_HEAD_BAD ? h.status : 0;
    rill_headscan_init(&h, max);
    for (size_t i = 0; i < n && piece == RILL_HEAD_MORE; i++) {
        piece = rill_headscan_feed(&h, s + i, 1, &u);
        total += u;
    }
    CHECK(piece == whole);
    if (whole == RILL_HEAD_DONE)
        CHECK(total == *used);
    return status;
}

static int status_of(const char *s)
{
    size_t used;
    return scan(s, 64, &used);
}

int main(void)
{
    size_t used;
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    CHECK(scan(get, 64, &used) == 200 && used == strlen(get) - 4);
    CHECK(status_of("GET / HTTP/1.1\nHost: x\n\n") == 200);            /* bare LF ends lines */
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\tb \x80\r\n\r\n") == 200); /* HTAB, obs-text */
    CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n") == 0);            /* more to come */
    CHECK(status_of("\r\nGET / HTTP/1.1\r\n\r\n") == 400);
    CHECK(status_of("GET /\x01 HTTP/1.1\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\rX\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\r\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n") == 0); /* strlen stops at the NUL */
    CHECK(scan("GET / HTTP/1.1\r\nX: a", 64, &used) == 0);
    {
        struct rill_headscan h;
        const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
        rill_headscan_init(&h, 64);
        CHECK(rill_headscan_feed(&h, nul, sizeof nul - 1, &used) == RILL_HEAD_BAD);
        CHECK(h.status == 400 && strstr(h.why, "control"));
    }
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n") == 400); /* obs-fold */
    CHECK(status_of("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nBad Key: v\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\n: v\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nNoColon\r\n\r\n") == 400);
    /* sizes: the request line alone (414), or with the headers (431) */
    CHECK(scan("GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 16, &used) == 414);
    CHECK(scan("GET / HTTP/1.1\r\nX: aaaaaaaaaaaa\r\n\r\n", 24, &used) == 431);
    CHECK(scan("GET / HTTP/1.1\r\n\r\n", 18, &used) == 200); /* exactly the limit */
    CHECK(scan("GET / HTTP/1.1\r\n\r\n", 17, &used) == 431);
    CHECK(rill_is_tchar('a') && rill_is_tchar('~') && !rill_is_tchar(' ') && !rill_is_tchar(':') &&
          !rill_is_tchar(0));
    return check_report();
}
