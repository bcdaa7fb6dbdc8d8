/* SPDX-License-Identifier: MIT */
#include "headscan.h"

#include <string.h>

enum {
    S_LINE,     /* in the request line */
    S_LINE_CR,  /* the request line's CR: LF must follow */
    S_FIELD,    /* at the start of a header line, or of the blank line */
    S_NAME,     /* in a header name */
    S_VALUE,    /* after the colon */
    S_VALUE_CR, /* a header line's CR */
    S_BLANK_CR, /* the blank line's CR */
};

int rill_is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A control byte other than HTAB: never in a request line or a field value. */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

void rill_headscan_init(struct rill_headscan *h, size_t max)
{
    memset(h, 0, sizeof *h);
    h->max = max;
    h->state = S_LINE;
}

static enum rill_headscan_result bad(struct rill_headscan *h, int status, const char *why)
{
    h->status = status;
    h->why = why;
    return RILL_HEAD_BAD;
}

/* A CR is only ever the first half of a line end. */
static enum rill_headscan_result after_cr(struct rill_headscan *h, unsigned char c, int next)
{
    if (c != '\n')
        return bad(h, 400, "bare CR in the request head");
    h->state = next;
    return RILL_HEAD_MORE;
}

/* One byte; DONE when it ended the head. */
static enum rill_headscan_result step(struct rill_headscan *h, unsigned char c)
{
    switch (h->state) {
    case S_LINE:
        if ((c == '\r' || c == '\n') && h->seen == 1)
            return bad(h, 400, "empty request line");
        if (c == '\r' || c == '\n')
            h->state = c == '\r' ? S_LINE_CR : S_FIELD;
        else if (is_ctl(c) || c == '\t')
            return bad(h, 400, "control character in the request line");
        return RILL_HEAD_MORE;
    case S_LINE_CR: return after_cr(h, c, S_FIELD);
    case S_FIELD:
        if (c == '\n')
            return RILL_HEAD_DONE;
        if (c == '\r')
            h->state = S_BLANK_CR;
        else if (c == ' ' || c == '\t')
            return bad(h, 400, "obsolete line folding in a header");
        else if (!rill_is_tchar(c))
            return bad(h, 400, "invalid header name");
        else
            h->state = S_NAME;
        return RILL_HEAD_MORE;
    case S_NAME:
        if (c == ':')
            h->state = S_VALUE;
        else if (!rill_is_tchar(c))
            return bad(h, 400, "invalid header name");
        return RILL_HEAD_MORE;
    case S_VALUE:
        if (c == '\r' || c == '\n')
            h->state = c == '\r' ? S_VALUE_CR : S_FIELD;
        else if (is_ctl(c))
            return bad(h, 400, "control character in a header value");
        return RILL_HEAD_MORE;
    case S_VALUE_CR: return after_cr(h, c, S_FIELD);
    default: /* S_BLANK_CR */
        if (c != '\n')
            return bad(h, 400, "bare CR in the request head");
        return RILL_HEAD_DONE;
    }
}

enum rill_headscan_result rill_headscan_feed(struct rill_headscan *h, const char *p, size_t n,
                                             size_t *used)
{
    for (size_t i = 0; i < n; i++) {
        if (++h->seen > h->max) /* a line too long for the request line is a URI too long */
            return h->state <= S_LINE_CR ? bad(h, 414, "request line too long")
                                         : bad(h, 431, "request header fields too large");
        enum rill_headscan_result res = step(h, (unsigned char)p[i]);
        if (res == RILL_HEAD_DONE)
            *used = i + 1;
        if (res != RILL_HEAD_MORE)
            return res;
    }
    *used = n;
    return RILL_HEAD_MORE;
}
