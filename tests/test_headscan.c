/* SPDX-License-Identifier: MIT */
/* Unit tests for the raw request head scanner (ctest). */
#include "headscan.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

/* Scans s whole, then byte by byte: both must agree. Returns the status (200: a head). */
static int scan(const char *s, size_t max, size_t *used)
{
    struct rill_headscan h;
    size_t n = strlen(s), u = 0, total = 0;
    enum rill_scan_result whole, piece = RILL_SCAN_MORE;
    rill_headscan_init(&h, max);
    whole = rill_headscan_feed(&h, s, n, used);
    int status = whole == RILL_SCAN_DONE ? 200 : whole == RILL_SCAN_BAD ? h.status : 0;
    rill_headscan_init(&h, max);
    for (size_t i = 0; i < n && piece == RILL_SCAN_MORE; i++) {
        piece = rill_headscan_feed(&h, s + i, 1, &u);
        total += u;
    }
    CHECK(piece == whole);
    if (whole == RILL_SCAN_DONE)
        CHECK(total == *used);
    return status;
}

static int status_of(const char *s)
{
    size_t used;
    return scan(s, 64, &used);
}

/* A chunked body, whole then byte by byte; returns 0 (more), 1 (done), -1 (bad). */
static int chunks(const char *s, size_t *used, const char **why, size_t *line)
{
    struct rill_chunkscan c;
    size_t n = strlen(s), u = 0, total = 0;
    enum rill_scan_result whole, piece = RILL_SCAN_MORE;
    rill_chunkscan_init(&c, 64);
    whole = rill_chunkscan_feed(&c, s, n, used);
    *why = c.why;
    *line = c.line;
    rill_chunkscan_init(&c, 64);
    for (size_t i = 0; i < n && piece == RILL_SCAN_MORE; i++) {
        piece = rill_chunkscan_feed(&c, s + i, 1, &u);
        total += piece == RILL_SCAN_BAD ? 0 : u;
    }
    CHECK(piece == whole);
    if (whole != RILL_SCAN_MORE)
        CHECK(total == *used && c.line == *line);
    return whole == RILL_SCAN_DONE ? 1 : whole == RILL_SCAN_BAD ? -1 : 0;
}

static int chunked(const char *head)
{
    struct rill_headscan h;
    size_t used;
    rill_headscan_init(&h, 256);
    return rill_headscan_feed(&h, head, strlen(head), &used) == RILL_SCAN_DONE && h.chunked;
}

static void test_chunked(void)
{
    size_t used, line;
    const char *why;
    CHECK(chunked("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
    CHECK(chunked("POST / HTTP/1.1\r\ntransfer-encoding:  Chunked \t\r\n\r\n"));
    CHECK(!chunked("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"));
    CHECK(!chunked("POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n"));
    CHECK(!chunked("POST / HTTP/1.1\r\nTransfer-Encoding: chunked     x\r\n\r\n"));
    CHECK(!chunked("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, deflate, chunked\r\n\r\n"));
    CHECK(!chunked("POST / HTTP/1.1\r\nX-Transfer-Encoding: chunked\r\n\r\n"));
    CHECK(
        !chunked("POST / HTTP/1.1\r\nTransfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n"));

    const char *body = "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\nGET";
    CHECK(chunks(body, &used, &why, &line) == 1 && used == strlen(body) - 3);
    CHECK(chunks("3\nabc\n0\n\n", &used, &why, &line) == 1);
    CHECK(chunks("0\r\nX-T: v\r\n\r\n", &used, &why, &line) == 1);
    CHECK(chunks("3\r\nab", &used, &why, &line) == 0);
    CHECK(chunks("3;x=y\r\nabc\r\n", &used, &why, &line) == -1 && strstr(why, "extension") &&
          line == 1 && used == 1);
    CHECK(chunks("0x3\r\nabc\r\n", &used, &why, &line) == -1 && line == 1);
    CHECK(chunks("+3\r\nabc\r\n", &used, &why, &line) == -1 && line == 0);
    CHECK(chunks(" 3\r\nabc\r\n", &used, &why, &line) == -1);
    CHECK(chunks("3 \r\nabc\r\n", &used, &why, &line) == -1);
    CHECK(chunks("zz\r\n", &used, &why, &line) == -1 && strstr(why, "invalid chunk size"));
    CHECK(chunks("\r\n3\r\nabc\r\n", &used, &why, &line) == -1 && strstr(why, "missing"));
    CHECK(chunks("3\rabc", &used, &why, &line) == -1);
    CHECK(chunks("ffffffffffffffffff\r\n", &used, &why, &line) == -1 && strstr(why, "too long"));
    CHECK(chunks("3\r\nabcX\r\n", &used, &why, &line) == -1 && strstr(why, "longer") && used == 6 &&
          line == 0);
    CHECK(chunks("1\r\na\r\n0\r\nX T: v\r\n\r\n", &used, &why, &line) == -1 && line == 1);
    CHECK(chunks("0\r\nX: a\0b\r\n\r\n", &used, &why, &line) == 0); /* strlen: cut at NUL */
}

/*
 * The request line must be a shape evhttp parses (else evhttp answers with
 * an HTML page, a body even to a HEAD), and nothing valid may be refused.
 */
static void test_request_line_shape(void)
{
    static const char *const ok[] = {
        "GET / HTTP/1.1",     "GET / HTTP/1.0",        "HEAD /a/b?c=d HTTP/1.1",
        "OPTIONS * HTTP/1.1", "PATCH /%2F/x HTTP/1.1", "POST /a:b HTTP/1.1",
    };
    static const char *const bad[] = {
        "GET  / HTTP/1.1",     "HEAD  HTTP/1.1",     " /abcdefgh HTTP/1.1",
        "HEAD //a:b HTTP/1.1", "HEAD //[x HTTP/1.1", "HEAD :x HTTP/1.1",
        "HEAD / HTTP/2.0",     "HEAD / HTTP/1.1x",   "HEAD /",
        "GET / HTTP/1.1 ",     "X / HTTP/1.1",       "GET /  HTTP/1.1",
        "GET *x HTTP/1.1",     "GET / http/1.1",
    };
    char head[128];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(head, sizeof head, "%s\r\nHost: x\r\n\r\n", ok[i]);
        CHECK(status_of(head) == 200);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(head, sizeof head, "%s\r\nHost: x\r\n\r\n", bad[i]);
        CHECK(status_of(head) == 400);
    }
}

int main(void)
{
    test_chunked();
    test_request_line_shape();
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
        CHECK(rill_headscan_feed(&h, nul, sizeof nul - 1, &used) == RILL_SCAN_BAD);
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
