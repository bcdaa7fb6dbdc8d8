/* SPDX-License-Identifier: MIT */
/* Unit tests for a head's framing (headframe.c) and the chunk decoder's data hook (ctest). */
#include "headframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "headscan.h"

static struct rill_head_frame read_head(const char *s)
{
    struct rill_head_frame f;
    rill_head_frame_read(s, strlen(s), &f);
    return f;
}

static int streamable(const char *s)
{
    struct rill_head_frame f = read_head(s);
    return rill_head_frame_streamable(&f);
}

static void test_clean_framings(void)
{
    struct rill_head_frame f =
        read_head("POST /up/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: \t 42 \r\n\r\n");
    CHECK(f.body_method && f.http11 && f.lengths == 1 && f.length_ok && f.length == 42);
    CHECK(f.target_len == 5 && memcmp(f.target, "/up/a", 5) == 0);
    CHECK(rill_head_frame_streamable(&f));
    f = read_head("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding: Chunked\nExpect: 100-Continue\n\n");
    CHECK(f.chunked && f.expect_continue && rill_head_frame_streamable(&f));
    CHECK(streamable("PATCH /x HTTP/1.1\r\ncontent-length: 1\r\n\r\n"));
    CHECK(streamable("POST /x HTTP/1.1\r\nContent-Length: 4611686018427387904\r\n\r\n"));
}

static void test_what_is_left_to_evhttp(void)
{
    CHECK(!streamable("GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n"));  /* method */
    CHECK(!streamable("POST /x HTTP/1.0\r\nContent-Length: 5\r\n\r\n")); /* version */
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")); /* empty */
    CHECK(!streamable("POST /x HTTP/1.1\r\n\r\n"));                      /* no body */
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 4611686018427387905\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"));
    CHECK(
        !streamable("POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n"));
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Length:\r\n\r\n"));
    /* a name that only begins like a framing field is not one */
    CHECK(!streamable("POST /x HTTP/1.1\r\nContent-Lengths: 5\r\n\r\n"));
}

static void test_strip(void)
{
    const char *head = "POST /x HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\nX-A: 1\r\n"
                       "Transfer-Encoding: chunked\r\nX-Content-Length: 2\r\n\r\n";
    char out[256];
    size_t n = rill_head_frame_strip(head, strlen(head), out);
    const char *want = "POST /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-Content-Length: 2\r\n\r\n";
    CHECK(n == strlen(want) && memcmp(out, want, n) == 0);
    const char *lf = "PUT /x HTTP/1.1\nContent-Length: 3\nA: b\n\n";
    n = rill_head_frame_strip(lf, strlen(lf), out);
    CHECK(n == strlen("PUT /x HTTP/1.1\nA: b\n\n") &&
          memcmp(out, "PUT /x HTTP/1.1\nA: b\n\n", n) == 0);
}

struct collected {
    char data[256];
    size_t len;
};

static void collect(void *arg, const char *p, size_t n)
{
    struct collected *c = arg;
    if (c->len + n <= sizeof c->data)
        memcpy(c->data + c->len, p, n);
    c->len += n;
}

/* The decoded data of a chunked body, fed whole and byte by byte: the same either way. */
static void test_chunk_data(void)
{
    const char *body = "5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct rill_chunkscan c;
        struct collected got = {{0}, 0};
        rill_chunkscan_init(&c, 1024);
        c.on_data = collect;
        c.data_arg = &got;
        size_t n = strlen(body), at = 0, used = 0;
        enum rill_scan_result res = RILL_SCAN_MORE;
        while (at < n && res == RILL_SCAN_MORE) {
            size_t piece = bytewise ? 1 : n - at;
            res = rill_chunkscan_feed(&c, body + at, piece, &used);
            at += used;
        }
        CHECK(res == RILL_SCAN_DONE);
        CHECK(strcmp(body + at, "NEXT") == 0);
        CHECK(got.len == 16 && memcmp(got.data, "hello 0123456789", 16) == 0);
    }
}

int main(void)
{
    test_clean_framings();
    test_what_is_left_to_evhttp();
    test_strip();
    test_chunk_data();
    return check_report();
}
