/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the server-sent events parser (ctest). The WPT eventsource
 * format vectors are rebuilt from the test and its resources/ scripts:
 * message.py sends `message` + "\n\n" (none with newline=none) + "\n"; a
 * browser reconnect after the clean end is a rill_sse_reset. Every vector
 * is fed whole, in every 2-piece split and byte by byte.
 */
#include "sse_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define ELLIPSIS     "\xE2\x80\xA6" /* U+2026, the id WPT's last-event-id.py sends */
#define ELLIPSIS_LOG "\\xe2\\x80\\xa6"
#define BOM          "\xEF\xBB\xBF"

/*
 * The log of one run: a line per dispatch,
 *   `type{data} id=ID[ retry=N]` when an event fires, `- id=ID[ retry=N]` when not,
 * with LF, CR, tab, backslash and bytes outside printable ASCII escaped, then
 * `last=ID` (the committed id when the input ends).
 */
struct rec {
    char log[8192];
    size_t len;
    int calls, stop_at, rc;
};

static void put(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->len, sizeof r->log - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len += (size_t)n < sizeof r->log - r->len ? (size_t)n : sizeof r->log - r->len - 1;
}

static void put_esc(struct rec *r, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            put(r, "\\n");
        else if (c == '\r')
            put(r, "\\r");
        else if (c == '\t')
            put(r, "\\t");
        else if (c == '\\')
            put(r, "\\\\");
        else if (c < 0x20 || c >= 0x7f)
            put(r, "\\x%02x", c);
        else
            put(r, "%c", c);
    }
}

static int record(const struct rill_sse_event *ev, void *arg)
{
    struct rec *r = arg;
    if (ev->fires) {
        put_esc(r, ev->type, ev->type_len);
        put(r, "{");
        put_esc(r, ev->data, ev->data_len);
        put(r, "}");
    } else {
        put(r, "-");
    }
    put(r, " id=");
    put_esc(r, ev->id, ev->id_len);
    if (ev->retry >= 0)
        put(r, " retry=%lld", ev->retry);
    put(r, "\n");
    r->calls++;
    return r->calls == r->stop_at ? 42 : 0;
}

static void put_last(struct rec *r, const struct rill_sse_parser *p)
{
    size_t n;
    const char *id = rill_sse_last_id(p, &n);
    put(r, "last=");
    put_esc(r, id, n);
}

struct resp {
    const char *s;
    size_t n;
};
#define R(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

enum { WHOLE = -1, BYTES = -2 }; /* else: split every response at this offset */

static void feed(struct rill_sse_parser *p, const char *s, size_t n, struct rec *r)
{
    int rc = rill_sse_feed(p, s, n, record, r);
    if (rc && !r->rc)
        r->rc = rc;
}

/* Feeds the responses (a reset before each but the first) in one way. */
static void run(const struct resp *rs, size_t nr, long how, struct rec *r)
{
    struct rill_sse_parser *p = rill_sse_new(0);
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < nr; i++) {
        const char *s = rs[i].s;
        size_t n = rs[i].n;
        if (i)
            rill_sse_reset(p);
        if (how == WHOLE) {
            feed(p, s, n, r);
        } else if (how == BYTES) {
            for (size_t j = 0; j < n; j++)
                feed(p, s + j, 1, r);
        } else {
            size_t k = (size_t)how < n ? (size_t)how : n;
            feed(p, s, k, r);
            feed(p, s + k, n - k, r);
        }
    }
    put_last(r, p);
    rill_sse_free(p);
}

static int same(const char *name, const char *way, const struct rec *r, const char *want)
{
    checks++;
    if (r->rc == 0 && strcmp(r->log, want) == 0)
        return 1;
    fprintf(stderr, "%s (%s): rc %d, got\n%s\nwant\n%s\n", name, way, r->rc, r->log, want);
    failures++;
    return 0;
}

/* Every way of cutting the input must give the log of the whole input. */
static void expect(const char *name, const struct resp *rs, size_t nr, const char *want)
{
    struct rec r;
    size_t longest = 0;
    run(rs, nr, WHOLE, &r);
    same(name, "whole", &r, want);
    run(rs, nr, BYTES, &r);
    same(name, "byte by byte", &r, want);
    for (size_t i = 0; i < nr; i++)
        longest = rs[i].n > longest ? rs[i].n : longest;
    for (size_t k = 0; k <= longest; k++) {
        char way[48];
        snprintf(way, sizeof way, "split at %zu", k);
        run(rs, nr, (long)k, &r);
        if (!same(name, way, &r, want))
            break;
    }
}

#define VEC(name, in, want)                                                                        \
    do {                                                                                           \
        const struct resp r_[] = {R(in)};                                                          \
        expect(name, r_, 1, want);                                                                 \
    } while (0)

static void test_wpt_bom(void)
{
    /* format-bom: only the first BOM is stripped; the second makes "\uFEFFdata" unknown */
    VEC("format-bom", BOM "data:1\n\n" BOM "data:2\n\ndata:3\n\n\n",
        "message{1} id=\nmessage{3} id=\nlast=");
    /* format-bom-2: a second BOM at the start is data, so the first line is ignored */
    VEC("format-bom-2", BOM BOM "data:1\n\ndata:2\n\ndata:3\n\n\n",
        "message{2} id=\nmessage{3} id=\nlast=");
}

static void test_wpt_comments(void)
{
    /* format-comments: comments between data lines, with every line end, 2 KiB long */
    static char in[8192];
    char x[2049];
    memset(x, 'x', 2048);
    x[2048] = '\0';
    int n =
        snprintf(in, sizeof in,
                 "data:1\r:%c\n:\r\ndata:2\n:%s\rdata:3\n:data:fail\r:%s\ndata:4\n\n", '\0', x, x);
    /* %c writes the NUL and counts it, so n is the exact length */
    const struct resp r[] = {{in, (size_t)n}};
    CHECK(n > 4096 && in[8] == '\0');
    expect("format-comments", r, 1, "message{1\\n2\\n3\\n4} id=\nlast=");
}

static void test_wpt_data(void)
{
    /* format-data-before-final-empty-line: the last block has no blank line, so it and its id
       are dropped; after the reconnect the same body comes again */
    const struct resp r[] = {R("retry:1000\ndata:test1\n\nid:test\ndata:test2\n"),
                             R("retry:1000\ndata:test1\n\nid:test\ndata:test2\n")};
    expect("format-data-before-final-empty-line", r, 2,
           "message{test1} id= retry=1000\nmessage{test1} id= retry=1000\nlast=");
    /* format-field-data: "data:" is "", two bare "data" lines are "\n" */
    VEC("format-field-data", "data:\n\ndata\ndata\n\ndata:test\n\n\n",
        "message{} id=\nmessage{\\n} id=\nmessage{test} id=\nlast=");
    /* format-null-character */
    VEC("format-null-character", "data:\0\n\n\n\n", "message{\\x00} id=\nlast=");
    /* format-utf-8: bytes pass through; a charset parameter changes nothing */
    VEC("format-utf-8", "data:ok" ELLIPSIS "\n\n\n", "message{ok" ELLIPSIS_LOG "} id=\nlast=");
    /* format-leading-space (also a lone CR as a line end) */
    VEC("format-leading-space", "data:\ttest\rdata: \ndata:test\n\n\n",
        "message{\\ttest\\n\\ntest} id=\nlast=");
    /* format-newlines: the final CR + LF is one line end */
    VEC("format-newlines", "data:test\r\ndata\ndata:test\r\n\r\n",
        "message{test\\n\\ntest} id=\nlast=");
    /* format-field-parsing */
    VEC("format-field-parsing",
        "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n "
        "data:32\ndata:4\n\n",
        "message{\\x00\\n 2\\n1\\n3\\n\\n4} id=\nlast=");
    /* format-field-unknown */
    VEC("format-field-unknown", "data:1\nfoo\nfoo: bar\ndata:2\n\n\n", "message{1\\n2} id=\nlast=");
}

static void test_wpt_event(void)
{
    /* format-field-event */
    VEC("format-field-event", "event:test\ndata:x\n\ndata:x\n\n\n",
        "test{x} id=\nmessage{x} id=\nlast=");
    /* format-field-event-empty: an empty type is "message" */
    VEC("format-field-event-empty", "event: \ndata:data\n\n\n", "message{data} id=\nlast=");
}

static void test_wpt_id(void)
{
    /* format-field-id: last-event-id.py, then (Last-Event-ID: ...) the id echoed as data */
    const struct resp id[] = {R("id: " ELLIPSIS "\nretry: 200\ndata: hello\n\n"),
                              R("data: " ELLIPSIS "\n\n"), R("data: " ELLIPSIS "\n\n")};
    expect("format-field-id", id, 2,
           "message{hello} id=" ELLIPSIS_LOG " retry=200\n"
           "message{" ELLIPSIS_LOG "} id=" ELLIPSIS_LOG "\nlast=" ELLIPSIS_LOG);
    /* format-field-id-2: the id persists over two reconnects */
    expect("format-field-id-2", id, 3,
           "message{hello} id=" ELLIPSIS_LOG " retry=200\n"
           "message{" ELLIPSIS_LOG "} id=" ELLIPSIS_LOG "\n"
           "message{" ELLIPSIS_LOG "} id=" ELLIPSIS_LOG "\nlast=" ELLIPSIS_LOG);
    /* format-field-id-3 (last-event-id2.py type=1, 2, 3): persists; "id:" and "id" reset */
    VEC("format-field-id-3 persists", "id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n",
        "message{1} id=1\nmessage{2} id=1\nmessage{3} id=2\nmessage{4} id=2\nlast=2");
    VEC("format-field-id-3 resets", "id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        "message{1} id=1\nmessage{2} id=\nmessage{3} id=\nlast=");
    VEC("format-field-id-3 resets without colon", "id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
        "message{1} id=1\nmessage{2} id=\nmessage{3} id=\nlast=");
}

/* format-field-id-null: an id with a NUL anywhere is ignored; the reconnect sends no id */
static void test_wpt_id_null(void)
{
    static const struct resp v[] = {R("\0\0"), R("x\0"), R("\0x"), R("x\0x"), R(" \0")};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char body[64];
        size_t n = 4;
        memcpy(body, "id: ", 4);
        memcpy(body + n, v[i].s, v[i].n);
        n += v[i].n;
        const char *rest = "\nretry: 200\ndata: hello\n\n";
        memcpy(body + n, rest, strlen(rest));
        n += strlen(rest);
        const struct resp r[] = {{body, n}, {body, n}};
        expect("format-field-id-null", r, 2,
               "message{hello} id= retry=200\nmessage{hello} id= retry=200\nlast=");
    }
}

static void test_wpt_retry(void)
{
    /* format-field-retry: decimal with a leading zero, not octal */
    VEC("format-field-retry", "retry:03000\ndata:x\n\n\n", "message{x} id= retry=3000\nlast=");
    /* format-field-retry-bogus: "1000x" is ignored and keeps 3000 */
    VEC("format-field-retry-bogus", "retry:3000\nretry:1000x\ndata:x\n\n\n",
        "message{x} id= retry=3000\nlast=");
    /* format-field-retry-empty */
    VEC("format-field-retry-empty", "retry\ndata:test\n\n\n", "message{test} id=\nlast=");
}

/* The quick vectors of notes/features-and-sse.md §3.6, and more edges. */
static void test_quick(void)
{
    VEC("crlf", "data:a\r\ndata:b\r\n\r\n", "message{a\\nb} id=\nlast=");
    VEC("cr only", "data:a\rdata:b\r\r", "message{a\\nb} id=\nlast=");
    VEC("cr cr lf", "data:a\r\r\n", "message{a} id=\nlast=");
    VEC("cr then crlf", "data:x\r\r\ndata:y\n\n", "message{x} id=\nmessage{y} id=\nlast=");
    VEC("id only", "id: 1\n\n", "- id=1\nlast=1");
    VEC("id with nul", "id: 2\0\ndata: z\n\n", "message{z} id=\nlast=");
    VEC("retry bogus alone", "retry: 10x\n\n", "last=");
    VEC("retry bogus no blank", "retry: 10x\n", "last=");
    VEC("retry only", "retry: 10\n\n", "- id= retry=10\nlast=");
    VEC("retry huge is clamped", "retry:99999999999999999999999\n\n",
        "- id= retry=9223372036854775807\nlast=");
    VEC("retry last valid wins", "retry:1\nretry:2\nretry:x\ndata\n\n",
        "message{} id= retry=2\nlast=");
    VEC("retry resets per dispatch", "retry:5\ndata:a\n\ndata:b\n\n",
        "message{a} id= retry=5\nmessage{b} id=\nlast=");
    VEC("case-sensitive name", "Data: q\n\n", "last=");
    VEC("bare data", "data\n\n", "message{} id=\nlast=");
    VEC("no blank line at end", "data: tail", "last=");
    VEC("no blank line after lf", "data: tail\n", "last=");
    VEC("comment only", ":hi\n\n\n\n:\n\n", "last=");
    VEC("event only", "event:x\n\ndata:y\n\n", "- id=\nmessage{y} id=\nlast=");
    VEC("one space dropped", "data:  two\n\n", "message{ two} id=\nlast=");
    VEC("tab kept", "data:\tx\n\n", "message{\\tx} id=\nlast=");
    VEC("colon in value", "data: a:b\nevent: c:d\n\n", "c:d{a:b} id=\nlast=");
    VEC("space before name", " data:x\n\n", "last=");
    VEC("long unknown names", "datadata:x\neventx:y\nidx\nretryx:1\ndata:z\n\n",
        "message{z} id=\nlast=");
    VEC("id persists, empty resets", "id:a\ndata:1\n\nid\n\ndata:2\n\n",
        "message{1} id=a\n- id=\nmessage{2} id=\nlast=");
    VEC("bom only at start", "data:1\n\n" BOM "data:2\n\n", "message{1} id=\nlast=");
    /* octal escapes below: "\xBBdata" would read "\xBBda" as one escape */
    VEC("not quite a bom", "\357\273\ndata:1\n\n", "message{1} id=\nlast=");
    VEC("half a bom is a name", "\357\273data:1\n\ndata:2\n\n", "message{2} id=\nlast=");
    VEC("bom then blank", BOM "\ndata:1\n\n", "message{1} id=\nlast=");
    VEC("empty", "", "last=");
}

struct pieces {
    int calls;
};

static int count(const struct rill_sse_event *ev, void *arg)
{
    (void)ev;
    ((struct pieces *)arg)->calls++;
    return 0;
}

/* "data: x\r" + "\ndata: y\n\n": one event, and the LF invents no blank line. */
static void test_cr_lf_split(void)
{
    struct rec r = {0};
    struct rill_sse_parser *p = rill_sse_new(0);
    CHECK(rill_sse_feed(p, "data: x\r", 8, record, &r) == 0);
    CHECK(rill_sse_feed(p, "\ndata: y\n\n", 10, record, &r) == 0);
    CHECK(strcmp(r.log, "message{x\\ny} id=\n") == 0);

    struct pieces c = {0};
    CHECK(rill_sse_feed(p, "data:z\r", 7, count, &c) == 0);
    CHECK(rill_sse_feed(p, "\n", 1, count, &c) == 0);
    CHECK(c.calls == 0); /* CR LF is one line end, not a line and a blank line */
    CHECK(rill_sse_feed(p, "\r", 1, count, &c) == 0);
    CHECK(c.calls == 1);
    CHECK(rill_sse_feed(p, "\n", 1, count, &c) == 0); /* ends the CR's line end */
    CHECK(c.calls == 1);
    CHECK(rill_sse_feed(p, NULL, 0, count, &c) == 0);
    rill_sse_free(p);
}

static void check_last(const struct rill_sse_parser *p, const char *want)
{
    size_t n;
    const char *id = rill_sse_last_id(p, &n);
    CHECK(n == strlen(want) && memcmp(id, want, n) == 0);
}

/* A 1 MiB data line against a 64 KiB cap: refused, and memory stays under the cap. */
static void test_cap(void)
{
    const size_t cap = 64 * 1024, big = 1024 * 1024;
    char *line = malloc(big + 6);
    struct rec r = {0};
    memcpy(line, "data:", 5);
    memset(line + 5, 'a', big);
    line[big + 5] = '\n';

    struct rill_sse_parser *p = rill_sse_new(cap);
    CHECK(rill_sse_feed(p, "id: 3\n\n", 7, record, &r) == 0);
    CHECK(rill_sse_feed(p, line, big + 6, record, &r) == RILL_SSE_TOO_BIG);
    CHECK(rill_sse_memory(p) <= cap + 1024);
    CHECK(rill_sse_feed(p, "\n", 1, record, &r) == RILL_SSE_TOO_BIG); /* sticky */
    rill_sse_reset(p);
    CHECK(rill_sse_feed(p, "data:ok\n\n", 9, record, &r) == 0);
    CHECK(strcmp(r.log, "- id=3\nmessage{ok} id=3\n") == 0);

    /* The same, fed in 4 KiB pieces */
    rill_sse_reset(p);
    int rc = 0;
    for (size_t off = 0; off < big + 6 && rc == 0; off += 4096)
        rc = rill_sse_feed(p, line + off, big + 6 - off < 4096 ? big + 6 - off : 4096, record, &r);
    CHECK(rc == RILL_SSE_TOO_BIG);
    CHECK(rill_sse_memory(p) <= cap + 1024);

    /* Comments and unknown fields are skipped, never stored: no limit, no growth */
    rill_sse_reset(p);
    line[4] = 'x'; /* "datax:aaaa..." */
    CHECK(rill_sse_feed(p, line, big + 6, record, &r) == 0);
    line[0] = ':';
    CHECK(rill_sse_feed(p, line, big + 6, record, &r) == 0);
    CHECK(rill_sse_memory(p) <= cap + 1024);

    /* an id line past 1 KiB is ignored: the id stays, nothing is held */
    memcpy(line, "id:", 3);
    CHECK(rill_sse_feed(p, line, big + 6, record, &r) == 0);
    CHECK(rill_sse_memory(p) <= cap + 1024);
    CHECK(rill_sse_feed(p, "data:after\n\n", 12, record, &r) == 0);
    check_last(p, "3");
    rill_sse_free(p);
    free(line);
}

/*
 * The cap bounds the whole parser, not each buffer: event, id and retry
 * values are swapped between buffers that are kept for reuse, so capping
 * each buffer alone let it hold about five times the cap.
 */
static void test_cap_whole(void)
{
    const size_t cap = 4096;
    char line[8192];
    struct pieces c = {0};
    struct rill_sse_parser *p = rill_sse_new(cap);
    for (int round = 0; round < 4; round++) {
        const char *fields[] = {"event:", "retry:", "id:", "data:"};
        for (size_t f = 0; f < 4; f++) {
            size_t k = strlen(fields[f]), n = f == 2 ? 500 : 3000;
            memcpy(line, fields[f], k);
            memset(line + k, f == 1 ? '7' : 'a' + round, n);
            memcpy(line + k + n, "\n\n", 2);
            CHECK(rill_sse_feed(p, line, k + n + 2, count, &c) == 0);
            CHECK(rill_sse_memory(p) <= cap + 256);
        }
    }
    CHECK(c.calls == 16);
    /* one event whose type, data and id together pass the cap is refused */
    const char *big_type = "event:";
    CHECK(rill_sse_feed(p, big_type, strlen(big_type), count, &c) == 0);
    memset(line, 't', 2000);
    CHECK(rill_sse_feed(p, line, 2000, count, &c) == 0);
    CHECK(rill_sse_feed(p, "\ndata:", 6, count, &c) == 0);
    CHECK(rill_sse_feed(p, line, 2000, count, &c) == RILL_SSE_TOO_BIG);
    CHECK(rill_sse_memory(p) <= cap + 256);
    rill_sse_free(p);
}

/* An id of 1 KiB is kept; one byte more and the line is ignored (WHATWG: just a field). */
static void test_id_limit(void)
{
    char line[RILL_SSE_MAX_ID + 16];
    struct rec r = {0};
    struct rill_sse_parser *p = rill_sse_new(0);
    CHECK(rill_sse_feed(p, "id: 1\n\n", 7, record, &r) == 0);
    memcpy(line, "id:", 3);
    memset(line + 3, 'k', RILL_SSE_MAX_ID + 1);
    memcpy(line + 3 + RILL_SSE_MAX_ID + 1, "\n\n", 2);
    CHECK(rill_sse_feed(p, line, RILL_SSE_MAX_ID + 6, record, &r) == 0);
    check_last(p, "1");
    CHECK(rill_sse_feed(p, line, RILL_SSE_MAX_ID + 3, record, &r) == 0); /* 1024 bytes */
    CHECK(rill_sse_feed(p, "\n\n", 2, record, &r) == 0);
    size_t n;
    rill_sse_last_id(p, &n);
    CHECK(n == RILL_SSE_MAX_ID);
    rill_sse_free(p);
}

/* The cap is on type + data (with its LFs) + the line being read. */
static void test_cap_edge(void)
{
    struct pieces c = {0};
    struct rill_sse_parser *p = rill_sse_new(16);
    CHECK(rill_sse_feed(p, "data:0123456789abcde\n\n", 22, count, &c) == 0); /* 15 + LF */
    CHECK(c.calls == 1);
    CHECK(rill_sse_feed(p, "data:0123456789abcdef\n", 22, count, &c) == RILL_SSE_TOO_BIG);
    rill_sse_reset(p);
    CHECK(rill_sse_feed(p, "event:0123456789a\ndata:abcde\n", 29, count, &c) == RILL_SSE_TOO_BIG);
    rill_sse_reset(p);
    CHECK(rill_sse_feed(p, "event:01234567\ndata:abcde\n\n", 27, count, &c) == 0);
    CHECK(c.calls == 2);
    rill_sse_free(p);
}

/* Reset keeps the committed id, drops the uncommitted one, strips a new BOM. */
static void test_reset(void)
{
    struct rec r = {0};
    struct rill_sse_parser *p = rill_sse_new(0);
    const char *one = "id: 5\ndata: a\n\nid: 6\ndata: b";
    CHECK(rill_sse_feed(p, one, strlen(one), record, &r) == 0);
    check_last(p, "5");
    rill_sse_reset(p);
    check_last(p, "5");
    CHECK(rill_sse_feed(p, BOM "data: c\n\n", 12, record, &r) == 0);
    CHECK(strcmp(r.log, "message{a} id=5\nmessage{c} id=5\n") == 0);

    /* The id is committed only at the blank line */
    CHECK(rill_sse_feed(p, "id: 9\n", 6, record, &r) == 0);
    check_last(p, "5");
    rill_sse_reset(p);
    CHECK(rill_sse_feed(p, "\n", 1, record, &r) == 0); /* nothing pending: no dispatch */
    check_last(p, "5");
    CHECK(rill_sse_feed(p, "data: d\n\n", 9, record, &r) == 0);
    CHECK(strstr(r.log, "message{d} id=5\n") != NULL);

    /* A BOM split across pieces, after a reset in the middle of one */
    r.len = 0;
    r.log[0] = '\0';
    CHECK(rill_sse_feed(p, "\xEF\xBB", 2, record, &r) == 0);
    rill_sse_reset(p);
    CHECK(rill_sse_feed(p, "\xEF", 1, record, &r) == 0);
    CHECK(rill_sse_feed(p, "\273\277data:e\r", 9, record, &r) == 0);
    rill_sse_reset(p); /* forgets the pending "e" */
    CHECK(rill_sse_feed(p, "\ndata:f\n\n", 9, record, &r) == 0);
    CHECK(strcmp(r.log, "message{f} id=5\n") == 0);
    rill_sse_free(p);
}

static int capture(const struct rill_sse_event *ev, void *arg)
{
    *(struct rill_sse_event *)arg = *ev;
    return 0;
}

/* An id-only block is reported with fires = 0 and the id committed. */
static void test_id_only(void)
{
    struct rill_sse_event ev = {0};
    struct rill_sse_parser *p = rill_sse_new(0);
    CHECK(rill_sse_feed(p, "id: 7\n\n", 7, capture, &ev) == 0);
    CHECK(ev.fires == 0 && ev.data_len == 0 && ev.retry == -1);
    CHECK(ev.id_len == 1 && ev.id[0] == '7');
    check_last(p, "7");
    CHECK(rill_sse_feed(p, "retry: 250\n\n", 12, capture, &ev) == 0);
    CHECK(ev.fires == 0 && ev.retry == 250 && ev.id_len == 1);
    CHECK(rill_sse_feed(p, "data: x\n\n", 9, capture, &ev) == 0);
    CHECK(ev.fires == 1 && ev.retry == -1 && ev.type_len == 7 &&
          memcmp(ev.type, "message", 7) == 0);
    rill_sse_free(p);

    /* No callback at all: the id is still tracked */
    p = rill_sse_new(0);
    CHECK(rill_sse_feed(p, "id: 8\n\n", 7, NULL, NULL) == 0);
    check_last(p, "8");
    rill_sse_free(p);
}

/* A callback that returns non-zero stops the feed; the rest of the piece is dropped. */
static void test_stop(void)
{
    struct rec r = {0};
    r.stop_at = 1;
    struct rill_sse_parser *p = rill_sse_new(0);
    CHECK(rill_sse_feed(p, "data:a\r\n\r", 9, record, &r) == 42);
    CHECK(r.calls == 1);
    CHECK(rill_sse_feed(p, "\ndata:b\n\n", 9, record, &r) == 0); /* the LF ends the CR's line */
    CHECK(strcmp(r.log, "message{a} id=\nmessage{b} id=\n") == 0);
    r.stop_at = 3;
    CHECK(rill_sse_feed(p, "data:c\n\ndata:d\n\n", 16, record, &r) == 42);
    CHECK(r.calls == 3);
    rill_sse_free(p);
    rill_sse_free(NULL);
}

int main(void)
{
    test_wpt_bom();
    test_wpt_comments();
    test_wpt_data();
    test_wpt_event();
    test_wpt_id();
    test_wpt_id_null();
    test_wpt_retry();
    test_quick();
    test_cr_lf_split();
    test_cap();
    test_cap_edge();
    test_cap_whole();
    test_id_limit();
    test_reset();
    test_id_only();
    test_stop();
    if (failures)
        fprintf(stderr, "%d of %d check(s) failed\n", failures, checks);
    return failures ? 1 : 0;
}
