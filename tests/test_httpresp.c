/* SPDX-License-Identifier: MIT */
/* Unit tests for the HTTP/1.x response parser (ctest). */
#include "httpresp.h"

#include <stdio.h>

#include "check.h"
#include <string.h>

struct seen {
    char headers[512];
    char body[512];
    int status, done, body_calls;
};

static void on_header(void *arg, const char *n, size_t nl, const char *v, size_t vl)
{
    struct seen *s = arg;
    char item[160];
    snprintf(item, sizeof item, "[%.*s=%.*s]", (int)nl, n, (int)vl, v);
    strncat(s->headers, item, sizeof s->headers - strlen(s->headers) - 1);
}

static void on_head(void *arg, int status)
{
    ((struct seen *)arg)->status = status;
}

static void on_body(void *arg, const char *d, size_t n)
{
    struct seen *s = arg;
    strncat(s->body, d, n < sizeof s->body - strlen(s->body) - 1 ? n : 0);
    s->body_calls++;
}

static void on_done(void *arg)
{
    ((struct seen *)arg)->done++;
}

static const struct rill_resp_handler handler = {on_header, on_head, on_body, on_done};

/* Feeds `in` whole (step 0) or in pieces of `step` bytes, then EOF if asked. */
static int run(const char *in, size_t step, int head_req, int eof, struct seen *s, const char **err)
{
    struct rill_resp_parser p;
    memset(s, 0, sizeof *s);
    rill_resp_init(&p, &handler, s, head_req);
    size_t len = strlen(in), at = 0;
    int rc = 0;
    while (at < len && rc == 0) {
        size_t n = step && step < len - at ? step : len - at;
        rc = rill_resp_feed(&p, in + at, n);
        at += n;
    }
    if (rc == 0 && eof)
        rc = rill_resp_eof(&p);
    *err = p.error;
    return rc;
}

/* The same response must parse identically whole and byte by byte. */
static void expect(const char *in, int head_req, int eof, int status, const char *headers,
                   const char *body, int done)
{
    for (size_t step = 0; step <= 1; step++) {
        struct seen s;
        const char *err;
        int rc = run(in, step, head_req, eof, &s, &err);
        if (rc != 0 || s.status != status || strcmp(s.headers, headers) || strcmp(s.body, body) ||
            s.done != done) {
            fprintf(stderr, "step %zu: rc=%d err=%s status=%d headers=%s body=%s done=%d\n", step,
                    rc, err ? err : "-", s.status, s.headers, s.body, s.done);
            failures++;
        }
    }
}

static void expect_error(const char *in, int eof, const char *why)
{
    struct seen s;
    const char *err;
    CHECK(run(in, 0, 0, eof, &s, &err) == -1);
    CHECK(err && strstr(err, why));
}

static void test_framing(void)
{
    expect("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello", 0, 0, 200,
           "[Content-Length=5][X-A=b]", "hello", 1);
    expect("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n"
           "T: 1\r\n\r\n",
           0, 0, 200, "[Transfer-Encoding=chunked]", "abcde", 1);
    expect("HTTP/1.0 200 OK\nServer: x\n\nuntil close", 0, 1, 200, "[Server=x]", "until close", 1);
    expect("HTTP/1.1 204 No Content\r\n\r\n", 0, 0, 204, "", "", 1);
    expect("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, 0, 200, "[Content-Length=5]", "", 1);
    expect("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0, 0,
           201, "[Content-Length=0]", "", 1);
    expect("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 0, 0, 200,
           "[Content-Length=2][Content-Length=2]", "ok", 1);
    /* bytes after a complete response are not taken as body */
    expect("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 0, 0, 200, "[Content-Length=2]",
           "ok", 1);
}

static void test_streaming(void)
{
    /* a chunk split across feeds is delivered in pieces, not held */
    struct rill_resp_parser p;
    struct seen s = {0};
    rill_resp_init(&p, &handler, &s, 0);
    const char *head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello";
    CHECK(rill_resp_feed(&p, head, strlen(head)) == 0);
    CHECK(strcmp(s.body, "hello") == 0);
    CHECK(rill_resp_feed(&p, "world\r\n0\r\n\r\n", 12) == 0);
    CHECK(strcmp(s.body, "helloworld") == 0 && s.done == 1);

    /* a Content-Length body, and a close-delimited one, flow piece by piece */
    memset(&s, 0, sizeof s);
    rill_resp_init(&p, &handler, &s, 0);
    const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
    CHECK(rill_resp_feed(&p, cl, strlen(cl)) == 0);
    CHECK(strcmp(s.body, "hello") == 0 && s.done == 0);
    CHECK(rill_resp_feed(&p, "world", 5) == 0 && s.done == 1);
    memset(&s, 0, sizeof s);
    rill_resp_init(&p, &handler, &s, 0);
    const char *close = "HTTP/1.0 200 OK\r\n\r\nfirst ";
    CHECK(rill_resp_feed(&p, close, strlen(close)) == 0 && strcmp(s.body, "first ") == 0);
    CHECK(rill_resp_feed(&p, "second", 6) == 0 && strcmp(s.body, "first second") == 0);
    CHECK(s.done == 0 && rill_resp_eof(&p) == 0 && s.done == 1);
}

static void test_errors(void)
{
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 1, "truncated");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 1, "truncated");
    expect_error("HTTP/1.1 200 OK\r\nContent-Le", 1, "before the response head");
    expect_error("", 1, "before the response head");
    expect_error("HTTP/2 200\r\n\r\n", 0, "malformed status line");
    expect_error("HTTP/1.1 2x0 OK\r\n\r\n", 0, "malformed status line");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0,
                 "Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0, "folding");
    expect_error("HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", 0, "header name");
    expect_error("HTTP/1.1 200 OK\r\nX: a\x01"
                 "b\r\n\r\n",
                 0, "control character");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0,
                 "malformed chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 0,
                 "too large");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY\r\n", 0,
                 "missing CRLF");
    char longline[RILL_RESP_LINE_MAX + 64];
    memset(longline, 'a', sizeof longline - 1);
    longline[sizeof longline - 1] = '\0';
    memcpy(longline, "HTTP/1.1 200 OK\r\nX: ", 20);
    expect_error(longline, 0, "too long");
}

static void test_reuse(void)
{
    struct rill_resp_parser p;
    struct seen s = {0};
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    rill_resp_init(&p, &handler, &s, 0);
    CHECK(rill_resp_feed(&p, ok, strlen(ok)) == 0 && rill_resp_reusable(&p));
    rill_resp_init(&p, &handler, &s, 0);
    CHECK(rill_resp_feed(&p, ok, strlen(ok)) == 0 && rill_resp_feed(&p, "x", 1) == 0);
    CHECK(!rill_resp_reusable(&p)); /* stray bytes */
    const char *closing = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    rill_resp_init(&p, &handler, &s, 0);
    CHECK(rill_resp_feed(&p, closing, strlen(closing)) == 0 && !rill_resp_reusable(&p));
    const char *old = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    rill_resp_init(&p, &handler, &s, 0);
    CHECK(rill_resp_feed(&p, old, strlen(old)) == 0 && !rill_resp_reusable(&p));
    const char *partial = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok";
    rill_resp_init(&p, &handler, &s, 0);
    CHECK(rill_resp_feed(&p, partial, strlen(partial)) == 0 && !rill_resp_reusable(&p));
}

int main(void)
{
    test_reuse();
    test_framing();
    test_streaming();
    test_errors();
    return check_report();
}
