/* SPDX-License-Identifier: MIT */
#ifndef RILL_HEADFRAME_H
#define RILL_HEADFRAME_H
#include <stddef.h>
#include <stdint.h>

/*
 * The framing of a request head, read from its raw bytes, for a body the
 * gate reads itself (a streamed body, conn.c): which method, which path,
 * and whether the body is framed in the one clean way that can be read
 * without evhttp: exactly one Content-Length of digits, or exactly one
 * Transfer-Encoding that is "chunked" (and no Content-Length), on HTTP/1.1.
 * Anything else is left to evhttp and httpcheck.c, which refuse what they
 * must. The head was scanned first (headscan.c): its lines end in CRLF or
 * LF, its names are tokens, there is no obs-fold. No libevent, no Lua.
 */

struct rill_head_frame {
    const char *target; /* the request target as sent, up to '?' or '#' */
    size_t target_len;
    int body_method; /* POST, PUT or PATCH */
    int http11;
    int lengths;         /* Content-Length lines */
    int encodings;       /* Transfer-Encoding lines */
    int length_ok;       /* the one Content-Length is digits only, and fits */
    uint64_t length;     /* its value */
    int chunked;         /* the one Transfer-Encoding is "chunked" */
    int expect_continue; /* Expect: 100-continue */
};

/* The largest Content-Length read (2^62): past it, not a clean framing. */
#define RILL_HEAD_LENGTH_MAX (UINT64_C(1) << 62)

/* Reads the len bytes of a whole head (its blank line included) into f. */
void rill_head_frame_read(const char *head, size_t len, struct rill_head_frame *f);
/*
 * 1 when the body is framed cleanly and is not empty: a Content-Length over
 * 0, or chunked; the method may have a body; HTTP/1.1.
 */
int rill_head_frame_streamable(const struct rill_head_frame *f);
/*
 * Copies the head into out (len bytes or more) without its Content-Length
 * and Transfer-Encoding lines: what evhttp then reads has no body. Returns
 * the length written.
 */
size_t rill_head_frame_strip(const char *head, size_t len, char *out);

#endif
