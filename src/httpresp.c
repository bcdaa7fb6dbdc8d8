/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1.x response parser for rill.fetch. Lines (status, headers, chunk
 * sizes, trailers) are gathered in p->line; body bytes go straight from the
 * input to the handler, so a slow upstream chunk is delivered as it trickles
 * in rather than held until complete (what evhttp's client does,
 * notes/evhttp.md Q7).
 */
#include "httpresp.h"

#include <string.h>

#include "urlcode.h"

enum {
    S_STATUS,
    S_HEADER,
    S_BODY, /* Content-Length or close-delimited */
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END, /* the CRLF after chunk data */
    S_TRAILER,
    S_DONE,
    S_ERROR,
};

void rill_resp_init(struct rill_resp_parser *p, const struct rill_resp_handler *h, void *arg,
                    int head_request)
{
    memset(p, 0, offsetof(struct rill_resp_parser, line));
    p->h = h;
    p->arg = arg;
    p->no_body = head_request;
    p->state = S_STATUS;
}

static int fail(struct rill_resp_parser *p, const char *why)
{
    p->state = S_ERROR;
    p->error = why;
    return -1;
}

static void finish(struct rill_resp_parser *p)
{
    p->state = S_DONE;
    p->h->done(p->arg);
}

static int is_digits(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static long long to_number(const char *s, size_t n)
{
    long long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* "HTTP/1.1 200 OK" */
static int parse_status(struct rill_resp_parser *p, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
        !is_digits(l + 9, 3) || (n > 12 && l[12] != ' '))
        return fail(p, "malformed status line");
    p->status = (int)to_number(l + 9, 3);
    p->minor = l[7] - '0';
    if (p->status < 100)
        return fail(p, "malformed status line");
    p->te_chunked = p->te_other = p->cl_seen = p->cl_conflict = 0;
    p->head_bytes = 0;
    p->state = S_HEADER;
    return 0;
}

static int ieq(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return 0;
    }
    return 1;
}

/* Transfer-Encoding: only a final "chunked" frames the body. */
static void note_te(struct rill_resp_parser *p, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    size_t start = n;
    while (start > 0 && v[start - 1] != ',' && v[start - 1] != ' ')
        start--;
    if (ieq(v + start, n - start, "chunked"))
        p->te_chunked = 1;
    else
        p->te_other = 1;
}

static void note_cl(struct rill_resp_parser *p, const char *v, size_t n)
{
    if (!is_digits(v, n)) {
        p->cl_conflict = 1;
        return;
    }
    long long len = to_number(v, n);
    if (p->cl_seen && len != p->content_length)
        p->cl_conflict = 1;
    p->cl_seen = 1;
    p->content_length = len;
}

static int parse_header(struct rill_resp_parser *p, const char *l, size_t n)
{
    if (l[0] == ' ' || l[0] == '\t')
        return fail(p, "obsolete header line folding");
    const char *colon = memchr(l, ':', n);
    if (!colon || colon == l)
        return fail(p, "malformed header line");
    size_t nlen = (size_t)(colon - l);
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)l[i] <= ' ' || (unsigned char)l[i] >= 127)
            return fail(p, "malformed header name");
    const char *v = colon + 1, *end = l + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    for (size_t i = 0; i < vlen; i++)
        if (((unsigned char)v[i] < ' ' && v[i] != '\t') || v[i] == 127)
            return fail(p, "control character in a header value");
    if (ieq(l, nlen, "connection") && ieq(v, vlen, "close"))
        p->conn_close = 1;
    if (ieq(l, nlen, "transfer-encoding"))
        note_te(p, v, vlen);
    else if (ieq(l, nlen, "content-length"))
        note_cl(p, v, vlen);
    if (p->status >= 200)
        p->h->header(p->arg, l, nlen, v, vlen);
    return 0;
}

/* The blank line after the headers: choose the body's framing (RFC 9112 §6.3). */
static int end_of_head(struct rill_resp_parser *p)
{
    if (p->status < 200) { /* 100 Continue and friends: the real head follows */
        p->state = S_STATUS;
        return 0;
    }
    p->h->head(p->arg, p->status);
    if (p->state == S_ERROR || p->state == S_DONE)
        return 0;
    if (p->no_body || p->status == 204 || p->status == 304) {
        p->framing = RILL_RESP_NONE;
        finish(p);
    } else if (p->te_chunked || p->te_other) {
        if (!p->te_chunked || p->te_other)
            p->framing = RILL_RESP_CLOSE; /* chunked not last: read until close */
        else
            p->framing = RILL_RESP_CHUNKED;
        p->state = p->framing == RILL_RESP_CHUNKED ? S_CHUNK_SIZE : S_BODY;
    } else if (p->cl_conflict) {
        return fail(p, "conflicting or invalid Content-Length");
    } else if (p->cl_seen) {
        p->framing = RILL_RESP_LENGTH;
        p->remaining = p->content_length;
        p->state = S_BODY;
        if (p->remaining == 0)
            finish(p);
    } else {
        p->framing = RILL_RESP_CLOSE;
        p->state = S_BODY;
    }
    return 0;
}

/* "1a;ext=1" → 26 */
static int parse_chunk_size(struct rill_resp_parser *p, const char *l, size_t n)
{
    long long size = 0;
    size_t i = 0;
    for (; i < n && rill_hexval((unsigned char)l[i]) >= 0; i++) {
        if (i >= 15)
            return fail(p, "chunk size too large");
        size = size * 16 + rill_hexval((unsigned char)l[i]);
    }
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    if (i == 0 || (i < n && l[i] != ';'))
        return fail(p, "malformed chunk size");
    p->remaining = size;
    p->state = size == 0 ? S_TRAILER : S_CHUNK_DATA;
    return 0;
}

/* One complete line (terminator removed) in the current state. */
static int on_line(struct rill_resp_parser *p, const char *l, size_t n)
{
    switch (p->state) {
    case S_STATUS:
        if (n == 0)
            return 0; /* tolerate a stray blank line before the status */
        return parse_status(p, l, n);
    case S_HEADER:
        if (n == 0)
            return end_of_head(p);
        p->head_bytes += n;
        if (p->head_bytes > RILL_RESP_HEAD_MAX)
            return fail(p, "response head too large");
        return parse_header(p, l, n);
    case S_CHUNK_SIZE: return parse_chunk_size(p, l, n);
    case S_CHUNK_END:
        if (n != 0)
            return fail(p, "missing CRLF after chunk data");
        p->state = S_CHUNK_SIZE;
        return 0;
    case S_TRAILER:
        if (n == 0)
            finish(p);
        return 0; /* trailers are dropped */
    }
    return fail(p, "internal parser state");
}

static int in_line_state(int s)
{
    return s == S_STATUS || s == S_HEADER || s == S_CHUNK_SIZE || s == S_CHUNK_END ||
           s == S_TRAILER;
}

/* Takes bytes up to a line end; returns how many were consumed. */
static size_t take_line(struct rill_resp_parser *p, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    size_t n = nl ? (size_t)(nl - buf) : len;
    if (p->line_len + n > RILL_RESP_LINE_MAX) {
        fail(p, "response line too long");
        return len;
    }
    memcpy(p->line + p->line_len, buf, n);
    p->line_len += n;
    if (!nl)
        return len;
    size_t l = p->line_len;
    if (l > 0 && p->line[l - 1] == '\r')
        l--;
    p->line_len = 0;
    on_line(p, p->line, l);
    return n + 1;
}

/* Hands body bytes on; returns how many belong to the body. */
static size_t take_body(struct rill_resp_parser *p, const char *buf, size_t len)
{
    size_t n = len;
    if (p->framing != RILL_RESP_CLOSE && (long long)n > p->remaining)
        n = (size_t)p->remaining;
    if (n)
        p->h->body(p->arg, buf, n);
    if (p->framing == RILL_RESP_CLOSE)
        return n;
    p->remaining -= (long long)n;
    if (p->remaining == 0) {
        if (p->state == S_CHUNK_DATA)
            p->state = S_CHUNK_END;
        else
            finish(p);
    }
    return n;
}

int rill_resp_feed(struct rill_resp_parser *p, const char *buf, size_t len)
{
    while (len > 0) {
        size_t used;
        if (p->state == S_ERROR)
            return -1;
        if (p->state == S_DONE) {
            p->extra += len; /* bytes after the response are not ours */
            return 0;
        }
        if (in_line_state(p->state))
            used = take_line(p, buf, len);
        else
            used = take_body(p, buf, len);
        buf += used;
        len -= used;
    }
    return p->state == S_ERROR ? -1 : 0;
}

int rill_resp_eof(struct rill_resp_parser *p)
{
    if (p->state == S_DONE)
        return 0;
    if (p->state == S_ERROR)
        return -1;
    if (p->state == S_BODY && p->framing == RILL_RESP_CLOSE) {
        finish(p);
        return 0;
    }
    return fail(p, p->state == S_STATUS || p->state == S_HEADER
                       ? "connection closed before the response head"
                       : "truncated body: the upstream closed before its end");
}

int rill_resp_complete(const struct rill_resp_parser *p)
{
    return p->state == S_DONE;
}

int rill_resp_reusable(const struct rill_resp_parser *p)
{
    return p->state == S_DONE && p->minor == 1 && !p->conn_close && p->extra == 0 &&
           p->framing != RILL_RESP_CLOSE;
}

enum rill_resp_framing rill_resp_framing(const struct rill_resp_parser *p)
{
    return p->framing;
}
