/* SPDX-License-Identifier: MIT */
#include "headscan.h"

#include <string.h>
#include <strings.h>

enum {
    S_LINE,     /* in the request line */
    S_LINE_CR,  /* the request line's CR: LF must follow */
    S_FIELD,    /* at the start of a header line, or of the blank line */
    S_NAME,     /* in a header name */
    S_VALUE,    /* after the colon */
    S_VALUE_CR, /* a header line's CR */
    S_BLANK_CR, /* the blank line's CR */
};

/* RFC 9110 tchar as a bitmap: digits, letters and !#$%&'*+-.^_`|~ */
static const uint64_t TCHAR[2] = {0x03ff6cfa00000000u, 0x57ffffffc7fffffeu};

int rill_is_tchar(unsigned char c)
{
    return c < 128 && (TCHAR[c >> 6] >> (c & 63)) & 1;
}

/* A control byte other than HTAB: never in a request line or a field value. */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

int rill_is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!rill_is_tchar((unsigned char)s[i]))
            return 0;
    return n > 0;
}

long rill_value_bad_byte(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (is_ctl((unsigned char)v[i]))
            return (long)i;
    return -1;
}

/*
 * How many bytes from p only move the counters in the current state: the
 * common bytes of a request line, a value or a long name, read in a tight loop.
 */
static size_t plain_run(const struct rill_headscan *h, const unsigned char *p, size_t n)
{
    size_t i = 0;
    if (h->state == S_LINE)
        while (i < n && p[i] > 0x20 && p[i] != 0x7f)
            i++;
    else if (h->state == S_VALUE && !h->in_te)
        while (i < n && (p[i] >= 0x20 || p[i] == '\t') && p[i] != 0x7f)
            i++;
    else if (h->state == S_NAME && h->name_len == sizeof h->name)
        while (i < n && rill_is_tchar(p[i]))
            i++;
    return i;
}

/* ---- the head ------------------------------------------------------------------------- */

/* Keeps the last bytes of the request line, to see its version when it ends. */
static void version_add(struct rill_headscan *h, const unsigned char *p, size_t n)
{
    size_t cap = sizeof h->version;
    if (n >= cap) {
        memcpy(h->version, p + n - cap, cap);
        h->version_len = cap;
        return;
    }
    size_t keep = h->version_len < cap - n ? h->version_len : cap - n;
    memmove(h->version, h->version + h->version_len - keep, keep);
    memcpy(h->version + keep, p, n);
    h->version_len = keep + n;
}

/* Keeps the first bytes of the request target (the bytes after the first space). */
static void target_add(struct rill_headscan *h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n && h->target_len < sizeof h->target; i++)
        h->target[h->target_len++] = (char)p[i];
}

/*
 * The request line is "METHOD SP target SP HTTP/1.x", the target "*" or a
 * path from one "/" (httpcheck.c refuses every other form anyway). evhttp
 * answers a line it cannot parse itself (shorter than 14 bytes, an empty
 * part, a "//a:b" its URI parser takes for an authority), with an HTML page
 * even to a HEAD: rill refuses every other shape first, so that a refusal is
 * always its own.
 */
static int line_shape_ok(const struct rill_headscan *h)
{
    int target =
        (h->target_len == 1 && h->target[0] == '*') ||
        (h->target_len >= 1 && h->target[0] == '/' && (h->target_len == 1 || h->target[1] != '/'));
    return h->line_spaces == 2 && h->line >= 14 && target && h->version_len == sizeof h->version &&
           (memcmp(h->version, " HTTP/1.1", 9) == 0 || memcmp(h->version, " HTTP/1.0", 9) == 0);
}

void rill_headscan_init(struct rill_headscan *h, size_t max)
{
    memset(h, 0, sizeof *h);
    h->max = max;
    h->state = S_LINE;
}

static enum rill_scan_result bad(struct rill_headscan *h, int status, const char *why)
{
    h->status = status;
    h->why = why;
    return RILL_SCAN_BAD;
}

/* A CR is only ever the first half of a line end. */
static enum rill_scan_result after_cr(struct rill_headscan *h, unsigned char c, int next)
{
    if (c != '\n')
        return bad(h, 400, "bare CR in the request head");
    h->state = next;
    return RILL_SCAN_MORE;
}

/* The colon: the first Transfer-Encoding field has its value kept, to tell a chunked body. */
static void name_done(struct rill_headscan *h)
{
    h->in_te =
        !h->te_seen && h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0;
    h->te_seen |= h->in_te;
}

/* The end of a header line. */
static void field_done(struct rill_headscan *h)
{
    if (h->in_te) /* trailing spaces and tabs were never stored: evhttp trims them too */
        h->chunked = h->te_len == 7 && strncasecmp(h->te, "chunked", 7) == 0;
    h->in_te = 0;
    h->name_len = 0;
}

/*
 * A byte of a field value; only Transfer-Encoding's is kept. evhttp skips
 * the spaces before a value but not a tab, so "\tchunked" is no chunked
 * body to evhttp: refused, since a proxy in front may read it as one.
 */
static enum rill_scan_result value_byte(struct rill_headscan *h, unsigned char c)
{
    int blank = c == ' ' || c == '\t';
    if (!h->in_te)
        return RILL_SCAN_MORE;
    if (h->te_len == 0 && blank) {
        if (c == '\t')
            return bad(h, 400, "tab before the Transfer-Encoding value");
        return RILL_SCAN_MORE;
    }
    if (blank) {
        h->te_blanks++;
        return RILL_SCAN_MORE;
    }
    for (; h->te_blanks > 0; h->te_blanks--) /* blanks inside the value count */
        if (h->te_len++ < sizeof h->te)
            h->te[h->te_len - 1] = ' ';
    if (h->te_len < sizeof h->te)
        h->te[h->te_len] = (char)c;
    h->te_len++; /* past the buffer it can only be something else than "chunked" */
    return RILL_SCAN_MORE;
}

static enum rill_scan_result field_start(struct rill_headscan *h, unsigned char c)
{
    if (c == '\n')
        return RILL_SCAN_DONE;
    if (c == '\r')
        h->state = S_BLANK_CR;
    else if (c == ' ' || c == '\t')
        return bad(h, 400, "obsolete line folding in a header");
    else if (!rill_is_tchar(c))
        return bad(h, 400, "invalid header name");
    else {
        h->state = S_NAME;
        h->name[h->name_len++] = (char)c;
    }
    return RILL_SCAN_MORE;
}

/* One byte; DONE when it ended the head. */
static enum rill_scan_result step(struct rill_headscan *h, unsigned char c)
{
    switch (h->state) {
    case S_LINE:
        if ((c == '\r' || c == '\n') && h->line == 0)
            return bad(h, 400, "empty request line");
        if ((c == '\r' || c == '\n') && h->line_blank)
            return bad(h, 400, "space at the end of the request line");
        if ((c == '\r' || c == '\n') && !line_shape_ok(h))
            return bad(h, 400, "malformed request line or unsupported HTTP version");
        if (c == ' ' && (h->line == 0 || h->line_blank))
            return bad(h, 400, "malformed request line"); /* an empty method or target */
        h->line_blank = c == ' ';
        if (c == ' ') {
            h->line_spaces++;
            version_add(h, &c, 1);
        }
        if (c == '\r' || c == '\n')
            h->state = c == '\r' ? S_LINE_CR : S_FIELD;
        else if (is_ctl(c) || c == '\t')
            return bad(h, 400, "control character in the request line");
        else if (h->line >= RILL_REQUEST_LINE_MAX)
            return bad(h, 414, "request line too long");
        return RILL_SCAN_MORE;
    case S_LINE_CR: return after_cr(h, c, S_FIELD);
    case S_FIELD: return field_start(h, c);
    case S_NAME:
        if (c == ':') {
            name_done(h);
            h->state = S_VALUE;
        } else if (!rill_is_tchar(c)) {
            return bad(h, 400, "invalid header name");
        } else if (h->name_len < sizeof h->name) {
            h->name[h->name_len++] = (char)c;
        }
        return RILL_SCAN_MORE;
    case S_VALUE:
        if (c == '\r' || c == '\n') {
            field_done(h);
            h->state = c == '\r' ? S_VALUE_CR : S_FIELD;
        } else if (is_ctl(c)) {
            return bad(h, 400, "control character in a header value");
        }
        return value_byte(h, c);
    case S_VALUE_CR: return after_cr(h, c, S_FIELD);
    default: /* S_BLANK_CR */
        if (c != '\n')
            return bad(h, 400, "bare CR in the request head");
        return RILL_SCAN_DONE;
    }
}

/* One byte, counted against the size limit and the line. */
static enum rill_scan_result head_byte(struct rill_headscan *h, unsigned char c)
{
    if (++h->seen > h->max) /* a line too long for the request line is a URI too long */
        return h->state <= S_LINE_CR ? bad(h, 414, "request line too long")
                                     : bad(h, 431, "request header fields too large");
    enum rill_scan_result res = step(h, c);
    if (res != RILL_SCAN_BAD)
        h->line = c == '\n' ? 0 : h->line + 1;
    return res;
}

enum rill_scan_result rill_headscan_feed(struct rill_headscan *h, const char *p, size_t n,
                                         size_t *used)
{
    for (size_t i = 0; i < n; i++) {
        size_t run = plain_run(h, (const unsigned char *)p + i, n - i), room = h->max - h->seen;
        if (h->state == S_LINE && RILL_REQUEST_LINE_MAX - h->line < room)
            room = RILL_REQUEST_LINE_MAX - h->line; /* the line's own limit, as for the head's */
        run = run < room ? run : room;              /* the byte past the limit goes the slow way */
        if (run && h->state == S_LINE) {
            h->line_blank = 0; /* the run had no space */
            version_add(h, (const unsigned char *)p + i, run);
            if (h->line_spaces == 1)
                target_add(h, (const unsigned char *)p + i, run);
        }
        h->seen += run, h->line += run, i += run;
        if (i == n)
            break;
        enum rill_scan_result res = head_byte(h, (unsigned char)p[i]);
        if (res != RILL_SCAN_MORE) {
            *used = res == RILL_SCAN_DONE ? i + 1 : i;
            return res;
        }
    }
    *used = n;
    return RILL_SCAN_MORE;
}

/* ---- a chunked body ------------------------------------------------------------------- */

enum {
    C_SIZE,     /* the chunk-size line: hex digits, then its end */
    C_SIZE_CR,  /* its CR */
    C_DATA,     /* the chunk's bytes */
    C_DATA_END, /* the line end that must follow them */
    C_DATA_CR,  /* its CR */
    C_TRAILERS, /* after the last chunk: trailer fields, then the blank line */
};

void rill_chunkscan_init(struct rill_chunkscan *c, size_t max_trailer_bytes)
{
    memset(c, 0, sizeof *c);
    c->state = C_SIZE;
    rill_headscan_init(&c->trailers, max_trailer_bytes);
    c->trailers.state = S_FIELD;
}

static enum rill_scan_result chunk_bad(struct rill_chunkscan *c, const char *why)
{
    c->why = why;
    return RILL_SCAN_BAD;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The chunk-size line ended: data follow, or, for the last chunk, trailers. */
static void size_done(struct rill_chunkscan *c)
{
    c->state = c->left ? C_DATA : C_TRAILERS;
    c->digits = 0;
}

static enum rill_scan_result size_byte(struct rill_chunkscan *c, unsigned char ch)
{
    int v = hex_value(ch);
    if (v >= 0) {
        if (++c->digits > 15) /* 15 hex digits already pass any body limit */
            return chunk_bad(c, "chunk size too long");
        c->left = c->left * 16 + (uint64_t)v;
        return RILL_SCAN_MORE;
    }
    if ((ch == '\r' || ch == '\n') && c->digits == 0)
        return chunk_bad(c, "missing chunk size");
    if (ch == '\r')
        c->state = C_SIZE_CR;
    else if (ch == '\n')
        size_done(c);
    else
        return chunk_bad(c,
                         ch == ';' ? "chunk extensions are not supported" : "invalid chunk size");
    return RILL_SCAN_MORE;
}

static enum rill_scan_result chunk_byte(struct rill_chunkscan *c, unsigned char ch)
{
    switch (c->state) {
    case C_SIZE: return size_byte(c, ch);
    case C_SIZE_CR:
        if (ch != '\n')
            return chunk_bad(c, "bare CR in a chunk-size line");
        size_done(c);
        return RILL_SCAN_MORE;
    case C_DATA_END:
        if (ch != '\r' && ch != '\n')
            return chunk_bad(c, "chunk data longer than its size");
        c->state = ch == '\r' ? C_DATA_CR : C_SIZE;
        return RILL_SCAN_MORE;
    case C_DATA_CR:
        if (ch != '\n')
            return chunk_bad(c, "bare CR after chunk data");
        c->state = C_SIZE;
        return RILL_SCAN_MORE;
    default: { /* C_TRAILERS */
        enum rill_scan_result res = head_byte(&c->trailers, ch);
        if (res == RILL_SCAN_BAD)
            return chunk_bad(c, c->trailers.why);
        return res;
    }
    }
}

enum rill_scan_result rill_chunkscan_feed(struct rill_chunkscan *c, const char *p, size_t n,
                                          size_t *used)
{
    size_t i = 0;
    while (i < n) {
        if (c->state == C_DATA) { /* the bytes themselves: evhttp's to count, or on_data's */
            size_t take = c->left < n - i ? (size_t)c->left : n - i;
            if (c->on_data)
                c->on_data(c->data_arg, p + i, take);
            c->left -= take;
            i += take;
            if (c->left == 0) {
                c->state = C_DATA_END;
                c->line = 0;
            }
            continue;
        }
        unsigned char ch = (unsigned char)p[i];
        enum rill_scan_result res = chunk_byte(c, ch);
        if (res != RILL_SCAN_MORE) {
            *used = res == RILL_SCAN_DONE ? i + 1 : i;
            if (res == RILL_SCAN_BAD && c->state == C_TRAILERS)
                c->line = c->trailers.line;
            return res;
        }
        c->line = ch == '\n' ? 0 : c->line + 1;
        i++;
    }
    *used = n;
    return RILL_SCAN_MORE;
}
