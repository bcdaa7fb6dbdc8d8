/* SPDX-License-Identifier: MIT */
#ifndef RILL_REQBODY_H
#define RILL_REQBODY_H
#include <stddef.h>
#include <stdint.h>

#include "sched.h"

struct rill_request;

/*
 * Request bodies as Lua reads them (req:body_reader(), req:read_body()):
 * chunk by chunk from the gate for a streamed body (conn.c), or from
 * evhttp's buffer for one evhttp read whole. And the paths whose bodies are
 * streamed: the gate asks at each head, before evhttp reads any of it.
 */

/* What a request's reader keeps, made at its first read. */
struct rill_reqbody {
    struct rill_waiter wait; /* the reader waiting for bytes */
    uint64_t taken;          /* bytes given to Lua so far */
    uint64_t limit;          /* the reader's own limit (413 past it) */
};

/* 1 when the (raw, percent-encoded) target's path is under a path registered as streamed. */
int rill_body_streams(const char *target, size_t len);
/* Every path: the app is one handler that streams its bodies (rill.streamed_body). */
void rill_body_stream_all(void);
/* Whether any path is registered: most apps have none, and the gate looks no further. */
int rill_body_any_streams(void);
/* --max-body-bytes: the default limit of a reader. */
void rill_body_configure(size_t max_body_bytes);
/* News for r's waiting reader (bytes, the end, a framing error, the connection gone). */
void rill_body_news(struct rill_request *r);
/* At the request's end. */
void rill_body_free(struct rill_request *r);

#endif
