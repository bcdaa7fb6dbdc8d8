/* SPDX-License-Identifier: MIT */
#ifndef RILL_SSE_PARSE_H
#define RILL_SSE_PARSE_H
#include <stddef.h>

/*
 * A push parser for the server-sent events wire format (WHATWG HTML,
 * "Interpreting an event stream"; notes/features-and-sse.md §3). Bytes arrive
 * in pieces split anywhere; each blank line that ends a block that changed
 * something is reported to a callback. Raw bytes are relayed: no UTF-8
 * decoding, so invalid sequences pass through unchanged (a browser would show
 * U+FFFD) and a NUL in data is kept.
 */

#define RILL_SSE_DEFAULT_MAX (1024 * 1024) /* max_event_bytes when 0 is given */
#define RILL_SSE_MAX_CAP     (1 << 30)     /* the largest max_event_bytes accepted from Lua */
#define RILL_SSE_MAX_ID      1024          /* a longer id line is ignored, like a comment */

enum {
    RILL_SSE_TOO_BIG = -1, /* what the parser holds would pass max_event_bytes */
    RILL_SSE_NOMEM = -2,   /* a buffer could not grow */
};

struct rill_sse_parser;

/*
 * One dispatch. Every pointer is valid only during the callback and none is
 * NUL-terminated (data may hold NUL bytes).
 */
struct rill_sse_event {
    const char *type; /* the event field, or "message" when absent or empty */
    size_t type_len;
    const char *data; /* data lines joined by LF, without the final LF */
    size_t data_len;
    const char *id; /* the committed lastEventId after this dispatch ("" at first) */
    size_t id_len;
    /* the last valid retry since the previous dispatch, in ms (clamped to LLONG_MAX), or -1 */
    long long retry;
    int fires; /* 1: a MessageEvent fires; 0: an id/retry/event-only block */
};

/*
 * Called for each blank line ending a block in which an event or data line,
 * a valid id line (no NUL) or a valid retry line (digits only) was seen.
 * Blocks of comments, unknown fields or ignored lines, and extra blank lines,
 * produce no call: they change nothing a client or relay could see.
 * fires == 0 blocks still matter to a relay: they move lastEventId and
 * retry (notes §3.5). Return 0 to go on; a positive value stops the feed.
 * The callback must not call feed, reset or free on the same parser.
 */
typedef int (*rill_sse_dispatch_fn)(const struct rill_sse_event *ev, void *arg);

/*
 * Makes a parser. max_event_bytes caps everything the parser holds: the
 * pending event (data + type), the line being read (an event, id or retry
 * value) and the last event id (as received and as committed), spare buffer
 * capacity included, so a hostile upstream cannot grow memory past it:
 * rill_sse_memory() stays under max_event_bytes + sizeof the parser. An id
 * line longer than RILL_SSE_MAX_ID bytes is ignored (the id stays as it
 * was). Comment and unknown-field lines are skipped without being stored
 * and are not limited. 0 selects RILL_SSE_DEFAULT_MAX. Returns NULL when
 * out of memory.
 */
struct rill_sse_parser *rill_sse_new(size_t max_event_bytes);
void rill_sse_free(struct rill_sse_parser *p);

/*
 * Feeds the next piece of a response body; fn may be NULL. Returns 0, the
 * callback's non-zero value (the rest of buf is then dropped: reset before
 * feeding a new response), or RILL_SSE_TOO_BIG / RILL_SSE_NOMEM, after which
 * every feed fails the same way until rill_sse_reset. At the end of a
 * response just stop feeding: a block without its blank line is never
 * reported, and its id line never committed.
 */
int rill_sse_feed(struct rill_sse_parser *p, const char *buf, size_t len, rill_sse_dispatch_fn fn,
                  void *arg);

/*
 * Prepares for a new response on the same stream (a relay reconnecting):
 * forgets the partial line, the pending type, data and retry, and any error,
 * and strips a BOM at the start again. Keeps the committed lastEventId, and
 * puts the last-event-id buffer back to it: a reconnect resumes from the id
 * committed at a blank line, never from an uncommitted id line.
 */
void rill_sse_reset(struct rill_sse_parser *p);

/* The committed lastEventId (not NUL-terminated, never contains NUL). */
const char *rill_sse_last_id(const struct rill_sse_parser *p, size_t *len);

/* Bytes held by the parser, its buffers included (for stats and tests). */
size_t rill_sse_memory(const struct rill_sse_parser *p);

#endif
