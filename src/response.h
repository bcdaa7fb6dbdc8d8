/* SPDX-License-Identifier: MIT */
#ifndef RILL_RESPONSE_H
#define RILL_RESPONSE_H
#include <event2/buffer.h>
#include "request.h"

/* Output buffer marks of a streamed body (backpressure, notes/evhttp.md Q1). */
#define RILL_OUT_HIGH      (256 * 1024) /* above it the body iterator is not pulled */
#define RILL_OUT_LOW       (64 * 1024)  /* drained below it, pulling resumes */
#define RILL_IN_HIGH       (16 * 1024)  /* unread client input kept while a handler runs */
#define RILL_MIN_HEARTBEAT 0.001        /* seconds: a shorter one would fire every loop turn */

/* A short plain-text error reply (500, 503), when nothing was sent yet. */
void rill_response_error(struct rill_request *r, int status, const char *what);
/*
 * Ends an open stream: cleanly (terminating chunk) or not (the connection is
 * closed after what was already queued, so the client sees truncation).
 */
void rill_response_end(struct rill_request *r, int clean);
/* Sends buf (drained) as one chunk of r's open stream, compressed when r's body is. */
void rill_response_send(struct rill_request *r, struct evbuffer *buf);
/* --compress: responses that do not say compress = false are gzip'd when they can be. */
void rill_response_compress_default(int on);
/* A stream fed from C lets go of what it no longer needs of its request (its headers, URI). */
void rill_response_travel_light(struct rill_request *r);
/*
 * The handler of a stream out.drive took a generator for has returned: its
 * task goes on in that generator, resumed by C from the next loop turn
 * (which may take the stream off evhttp, lean.h). -1: out of memory, not adopted.
 */
int rill_response_drive(struct rill_request *r);
/* Hands a pumped stream's subscription back to the hub, closed (the stream ends). */
void rill_response_unpump(struct rill_request *r);
/* Heartbeat queues in use (stats): one per distinct rounded interval. */
int rill_response_beat_queues(void);
/* Stops an SSE stream's heartbeat timer (the stream ends, or its client left). */
void rill_response_stop_heartbeat(struct rill_request *r);
/* Arms close detection while a handler waits before its first byte (notes Q2). */
void rill_response_watch_close(struct rill_request *r);

#endif
