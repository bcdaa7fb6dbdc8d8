/* SPDX-License-Identifier: MIT */
/*
 * A scanned head's framing fields (headframe.h), line by line. Values are
 * trimmed of spaces and tabs both sides, as RFC 9110 §5.5 reads them.
 */
#include "headframe.h"

#include <string.h>
#include <strings.h>

/* The line starting at p (before end): its length without the line end, and where the next starts.
 */
static size_t line_at(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *stop = nl ? nl : end;
    *next = nl ? nl + 1 : end;
    if (stop > p && stop[-1] == '\r')
        stop--;
    return (size_t)(stop - p);
}

static int name_is(const char *line, size_t name_len, const char *name)
{
    return name_len == strlen(name) && strncasecmp(line, name, name_len) == 0;
}

/* The value of a field line after its colon, trimmed. */
static const char *value_of(const char *line, size_t len, size_t colon, size_t *vlen)
{
    const char *v = line + colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vlen = (size_t)(end - v);
    return v;
}

static void read_length(struct rill_head_frame *f, const char *v, size_t n)
{
    uint64_t x = 0;
    f->length_ok = n > 0 && n <= 19;
    for (size_t i = 0; i < n && f->length_ok; i++) {
        f->length_ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    f->length_ok = f->length_ok && x <= RILL_HEAD_LENGTH_MAX;
    f->length = f->length_ok ? x : 0;
}

static void read_field(struct rill_head_frame *f, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    size_t name_len = (size_t)(colon - line), vlen;
    const char *v = value_of(line, len, name_len, &vlen);
    if (name_is(line, name_len, "content-length")) {
        if (f->lengths++ == 0)
            read_length(f, v, vlen);
        else
            f->length_ok = 0;
    } else if (name_is(line, name_len, "transfer-encoding")) {
        f->chunked = f->encodings++ == 0 && vlen == 7 && strncasecmp(v, "chunked", 7) == 0;
    } else if (name_is(line, name_len, "expect")) {
        f->expect_continue = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
}

static void read_request_line(struct rill_head_frame *f, const char *line, size_t len)
{
    const char *sp1 = memchr(line, ' ', len);
    if (!sp1)
        return;
    size_t mlen = (size_t)(sp1 - line);
    f->body_method = (mlen == 4 && memcmp(line, "POST", 4) == 0) ||
                     (mlen == 3 && memcmp(line, "PUT", 3) == 0) ||
                     (mlen == 5 && memcmp(line, "PATCH", 5) == 0);
    const char *target = sp1 + 1, *end = line + len;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2)
        return;
    const char *stop = target;
    while (stop < sp2 && *stop != '?' && *stop != '#') /* the path, as httpcheck.c cuts it */
        stop++;
    f->target = target;
    f->target_len = (size_t)(stop - target);
    f->http11 = (size_t)(end - sp2) == 9 && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0;
}

void rill_head_frame_read(const char *head, size_t len, struct rill_head_frame *f)
{
    const char *p = head, *end = head + len, *next;
    memset(f, 0, sizeof *f);
    size_t n = line_at(p, end, &next);
    read_request_line(f, p, n);
    for (p = next; p < end; p = next) {
        n = line_at(p, end, &next);
        if (n == 0)
            break; /* the blank line */
        read_field(f, p, n);
    }
}

int rill_head_frame_streamable(const struct rill_head_frame *f)
{
    if (!f->body_method || !f->http11 || !f->target)
        return 0;
    if (f->lengths == 1 && f->encodings == 0)
        return f->length_ok && f->length > 0;
    return f->lengths == 0 && f->encodings == 1 && f->chunked;
}

size_t rill_head_frame_strip(const char *head, size_t len, char *out)
{
    const char *p = head, *end = head + len, *next;
    size_t w = 0;
    for (int first = 1; p < end; p = next, first = 0) {
        size_t n = line_at(p, end, &next);
        const char *colon = first || n == 0 ? NULL : memchr(p, ':', n);
        size_t name_len = colon ? (size_t)(colon - p) : 0;
        if (colon &&
            (name_is(p, name_len, "content-length") || name_is(p, name_len, "transfer-encoding")))
            continue;
        memcpy(out + w, p, (size_t)(next - p));
        w += (size_t)(next - p);
    }
    return w;
}
