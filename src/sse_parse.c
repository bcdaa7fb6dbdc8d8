/* SPDX-License-Identifier: MIT */
#include "sse_parse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *b;
    size_t len, cap;
};

/* What the bytes of the current line are doing. */
enum line_mode {
    M_START, /* no byte yet: a line end here is a blank line */
    M_NAME,  /* reading the field name, before any colon */
    M_DATA,  /* a data value: streamed straight into p->data */
    M_EVENT, /* M_EVENT, M_ID, M_RETRY: the value is collected in p->val */
    M_ID,
    M_RETRY,
    M_SKIP, /* a comment or an unknown field: bytes dropped, never stored */
};

#define BOM_DECIDED 3 /* p->bom once the start of the response is past */

struct rill_sse_parser {
    size_t max;             /* cap on held_bytes(): type + data + the value being read */
    struct buf data;        /* data buffer: values each followed by LF */
    struct buf type;        /* event type buffer */
    struct buf val;         /* the event, id or retry value being read */
    struct buf idbuf;       /* last-event-id buffer (set by id lines) */
    struct buf id;          /* committed lastEventId (set at dispatch) */
    long long retry;        /* valid retry since the last dispatch, or -1 */
    int err;                /* sticky RILL_SSE_TOO_BIG / RILL_SSE_NOMEM, or 0 */
    int mode;               /* enum line_mode */
    size_t name_len;        /* bytes in name */
    char name[5];           /* the longest known field names, "event" and "retry" */
    unsigned char bom;      /* BOM bytes matched so far, or BOM_DECIDED */
    unsigned char space;    /* the value has not started: one leading space goes */
    unsigned char after_cr; /* the last piece ended in CR: skip an LF first */
    unsigned char dirty;    /* the block changed state: its blank line is reported */
};

static const char bom_bytes[] = "\xEF\xBB\xBF";

static const char *str(const struct buf *b)
{
    return b->b ? b->b : "";
}

static void swap(struct buf *a, struct buf *b)
{
    struct buf t = *a;
    *a = *b;
    *b = t;
}

/* Every byte the buffers hold, spare capacity included: what the cap bounds. */
static size_t capacity(const struct rill_sse_parser *p)
{
    return p->data.cap + p->type.cap + p->val.cap + p->idbuf.cap + p->id.cap;
}

/* Gives back the spare capacity of every buffer but keep (an empty one is freed). */
static void shrink_others(struct rill_sse_parser *p, const struct buf *keep)
{
    struct buf *all[] = {&p->data, &p->type, &p->val, &p->idbuf, &p->id};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        struct buf *b = all[i];
        if (b == keep || b->cap == b->len)
            continue;
        if (b->len == 0) {
            free(b->b);
            b->b = NULL;
            b->cap = 0;
        } else {
            char *nb = realloc(b->b, b->len);
            if (nb) {
                b->b = nb;
                b->cap = b->len;
            }
        }
    }
}

/*
 * Makes room for need bytes in b. The capacities of all five buffers
 * together never pass max: buffers are kept for reuse and swapped (an event
 * line's value becomes the type, an id line's the id buffer), so a cap per
 * buffer would let the parser hold five times max. When doubling would pass
 * the cap, the others give back their spare room first; what remains
 * failing is RILL_SSE_TOO_BIG. Doubling keeps appends linear.
 */
static int reserve(struct rill_sse_parser *p, struct buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    if (capacity(p) - b->cap + need > p->max)
        shrink_others(p, b);
    size_t others = capacity(p) - b->cap;
    if (others > p->max || need > p->max - others)
        return RILL_SSE_TOO_BIG;
    size_t cap = b->cap ? b->cap * 2 : 64;
    if (cap < need) /* also when the doubling wrapped */
        cap = need;
    if (cap > p->max - others)
        cap = p->max - others;
    char *nb = realloc(b->b, cap);
    if (!nb)
        return RILL_SSE_NOMEM;
    b->b = nb;
    b->cap = cap;
    return 0;
}

static int fail(struct rill_sse_parser *p, int err)
{
    p->err = err;
    return err;
}

/*
 * The bytes the cap applies to: everything the parser holds, that is the
 * pending event (data, type), the line being read (an event, id or retry
 * value) and the last event id, as received and as committed.
 */
static size_t held_bytes(const struct rill_sse_parser *p)
{
    return p->data.len + p->type.len + p->val.len + p->idbuf.len + p->id.len;
}

/*
 * Appends n bytes to b, which is data or val. Returns 0, or the error that
 * now makes the parser unusable: the cap was reached, or realloc failed.
 */
static int append(struct rill_sse_parser *p, struct buf *b, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (held_bytes(p) > p->max || n > p->max - held_bytes(p))
        return fail(p, RILL_SSE_TOO_BIG);
    int rc = reserve(p, b, b->len + n);
    if (rc)
        return fail(p, rc);
    memcpy(b->b + b->len, s, n);
    b->len += n;
    return 0;
}

/* dst = src, within the cap: 0, or RILL_SSE_TOO_BIG / RILL_SSE_NOMEM. */
static int copy(struct rill_sse_parser *p, struct buf *dst, const struct buf *src)
{
    int rc = reserve(p, dst, src->len);
    if (rc)
        return rc;
    if (src->len)
        memcpy(dst->b, src->b, src->len);
    dst->len = src->len;
    return 0;
}

/* Field names are case-sensitive: "Data" is an unknown field. */
static int field_mode(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        int mode;
    } fields[] = {
        {"data", 4, M_DATA}, {"event", 5, M_EVENT}, {"id", 2, M_ID}, {"retry", 5, M_RETRY}};

    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (len == fields[i].len && memcmp(name, fields[i].name, len) == 0)
            return fields[i].mode;
    return M_SKIP;
}

/*
 * A retry value counts only when it is ASCII digits and not empty
 * ("retry: 1s" and "retry:" are ignored). Leading zeros are fine (03000 is
 * 3000); values past LLONG_MAX ms are clamped to it rather than refused.
 */
static int parse_retry(const char *s, size_t n, long long *ms)
{
    long long v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        v = v > (LLONG_MAX - d) / 10 ? LLONG_MAX : v * 10 + d;
    }
    *ms = v;
    return 0;
}

/*
 * Takes n > 0 bytes of the current line (no CR or LF). The name is kept only
 * while it can still be a known field (at most 5 bytes); a data value goes
 * straight to the data buffer, so payload bytes are copied once, even when a
 * line is split across pieces. Comments (empty name) and unknown fields are
 * dropped as they pass: they are neither stored nor capped.
 */
static int take(struct rill_sse_parser *p, const char *s, size_t n)
{
    if (p->mode == M_START)
        p->mode = M_NAME;
    if (p->mode == M_NAME) {
        const char *colon = memchr(s, ':', n);
        size_t k = colon ? (size_t)(colon - s) : n;
        if (k > sizeof p->name - p->name_len) {
            p->mode = M_SKIP;
            return 0;
        }
        memcpy(p->name + p->name_len, s, k);
        p->name_len += k;
        if (!colon)
            return 0;
        p->mode = field_mode(p->name, p->name_len);
        p->space = 1;
        s += k + 1;
        n -= k + 1;
    }
    if (p->space && n > 0) {
        p->space = 0;
        if (*s == ' ') { /* only one: "data:  x" is " x" */
            s++;
            n--;
        }
    }
    if (p->mode == M_DATA)
        return append(p, &p->data, s, n);
    if (p->mode == M_ID && n > RILL_SSE_MAX_ID - p->val.len) {
        p->mode = M_SKIP; /* an id past 1 KiB is dropped, as if the line were a comment */
        p->val.len = 0;
    }
    if (p->mode == M_SKIP)
        return 0;
    return append(p, &p->val, s, n);
}

/*
 * A field line ended: apply it (WHATWG "process the field"). A line with no
 * colon arrives here with an empty value. id with a NUL is ignored; an empty
 * id sets the buffer to "". Values are swapped in, not copied.
 */
static int end_field(struct rill_sse_parser *p)
{
    int rc = 0;
    long long ms;

    switch (p->mode) {
    case M_DATA:
        rc = append(p, &p->data, "\n", 1);
        p->dirty = 1;
        break;
    case M_EVENT:
        swap(&p->type, &p->val);
        p->dirty = 1;
        break;
    case M_ID:
        if (p->val.len == 0 || !memchr(p->val.b, '\0', p->val.len)) {
            swap(&p->idbuf, &p->val);
            p->dirty = 1;
        }
        break;
    case M_RETRY:
        if (parse_retry(p->val.b, p->val.len, &ms) == 0) {
            p->retry = ms;
            p->dirty = 1;
        }
        break;
    default: break;
    }
    p->val.len = 0;
    p->name_len = 0;
    p->space = 0;
    p->mode = M_START;
    return rc;
}

/*
 * A blank line: WHATWG "dispatch the event". The id buffer is committed even
 * when no event fires (an id-only block moves the resume point) and is not
 * cleared; data and type are. Blocks that changed nothing are not reported.
 */
static int dispatch(struct rill_sse_parser *p, rill_sse_dispatch_fn fn, void *arg)
{
    if (!p->dirty)
        return 0;
    int rc = copy(p, &p->id, &p->idbuf);
    if (rc)
        return fail(p, rc);

    struct rill_sse_event ev = {
        .type = p->type.len ? p->type.b : "message",
        .type_len = p->type.len ? p->type.len : 7,
        .data = str(&p->data),
        .data_len = p->data.len ? p->data.len - 1 : 0, /* minus the last LF */
        .id = str(&p->id),
        .id_len = p->id.len,
        .retry = p->retry,
        .fires = p->data.len > 0,
    };
    rc = fn ? fn(&ev, arg) : 0;
    p->data.len = 0;
    p->type.len = 0;
    p->retry = -1;
    p->dirty = 0;
    return rc;
}

static int end_line(struct rill_sse_parser *p, rill_sse_dispatch_fn fn, void *arg)
{
    if (p->mode == M_START)
        return dispatch(p, fn, arg);
    if (p->mode == M_NAME) /* no colon: the whole line is the name */
        p->mode = field_mode(p->name, p->name_len);
    return end_field(p);
}

/*
 * Strips one UTF-8 BOM at the start of a response, also when it is split
 * across pieces. Bytes that began like a BOM but were not one are part of
 * the first line. Returns the first byte left, or NULL on error.
 */
static const char *skip_bom(struct rill_sse_parser *p, const char *s, const char *end)
{
    while (p->bom < BOM_DECIDED && s < end) {
        if (*s != bom_bytes[p->bom]) {
            size_t k = p->bom;
            p->bom = BOM_DECIDED;
            return k && take(p, bom_bytes, k) ? NULL : s;
        }
        p->bom++;
        s++;
    }
    return s;
}

static const char *find(const char *s, const char *end, int c)
{
    const char *q = memchr(s, c, (size_t)(end - s));
    return q ? q : end;
}

/*
 * Splits [s, end) at CR, LF and CRLF, found with memchr (each byte is
 * scanned once per character looked for). A CR that ends the piece leaves
 * after_cr set, so an LF starting the next piece ends no second line: that
 * would invent a blank line and dispatch early (notes §3.1).
 */
static int feed_lines(struct rill_sse_parser *p, const char *s, const char *end,
                      rill_sse_dispatch_fn fn, void *arg)
{
    const char *cr = find(s, end, '\r'), *lf = find(s, end, '\n');
    while (s < end) {
        if (cr < s)
            cr = find(s, end, '\r');
        if (lf < s)
            lf = find(s, end, '\n');
        const char *eol = cr < lf ? cr : lf;
        if (eol > s && take(p, s, (size_t)(eol - s)))
            return p->err;
        if (eol == end)
            return 0;
        int rc = end_line(p, fn, arg);
        s = eol + 1;
        if (*eol == '\r') {
            if (s == end)
                p->after_cr = 1;
            else if (*s == '\n')
                s++;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int rill_sse_feed(struct rill_sse_parser *p, const char *buf, size_t len, rill_sse_dispatch_fn fn,
                  void *arg)
{
    if (p->err)
        return p->err;
    if (len == 0)
        return 0;
    const char *end = buf + len, *s = skip_bom(p, buf, end);
    if (!s)
        return p->err;
    if (p->after_cr && s < end) {
        p->after_cr = 0;
        if (*s == '\n')
            s++;
    }
    return feed_lines(p, s, end, fn, arg);
}

struct rill_sse_parser *rill_sse_new(size_t max_event_bytes)
{
    struct rill_sse_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max = max_event_bytes ? max_event_bytes : RILL_SSE_DEFAULT_MAX;
    p->retry = -1;
    return p;
}

void rill_sse_free(struct rill_sse_parser *p)
{
    if (!p)
        return;
    free(p->data.b);
    free(p->type.b);
    free(p->val.b);
    free(p->idbuf.b);
    free(p->id.b);
    free(p);
}

/*
 * Buffers are kept for reuse. Restoring the id buffer can need memory (an
 * uncommitted id line may have swapped in a smaller buffer); if that fails,
 * the next feed reports RILL_SSE_NOMEM.
 */
void rill_sse_reset(struct rill_sse_parser *p)
{
    p->data.len = 0;
    p->type.len = 0;
    p->val.len = 0;
    p->retry = -1;
    p->mode = M_START;
    p->name_len = 0;
    p->bom = 0;
    p->space = 0;
    p->after_cr = 0;
    p->dirty = 0;
    p->err = copy(p, &p->idbuf, &p->id);
}

const char *rill_sse_last_id(const struct rill_sse_parser *p, size_t *len)
{
    *len = p->id.len;
    return str(&p->id);
}

size_t rill_sse_memory(const struct rill_sse_parser *p)
{
    return sizeof *p + p->data.cap + p->type.cap + p->val.cap + p->idbuf.cap + p->id.cap;
}
