/* SPDX-License-Identifier: MIT */
#ifndef RILL_LEAN_H
#define RILL_LEAN_H
#include <event2/buffer.h>
#include <event2/event.h>
#include <stddef.h>

/*
 * A stream taken off evhttp (issue 17). Once a C-fed event stream's head is
 * out, nothing of its request is needed any more: its socket becomes the
 * stream's alone, with one struct event, and an output buffer only while
 * the client is behind. What evhttp, its bufferevent and the gate kept for
 * the connection (about 2 KiB: conn.c rill_conn_detach) is freed. Plain
 * HTTP/1.1 chunked streams whose head said Connection: close only: when the
 * stream ends its connection closes, as the head said.
 *
 * The client is watched as the gate watched it: its close is seen at once
 * (a read of 0), and one that does not read what it is sent is dropped
 * after one to two --keepalive-timeouts without progress. What it sends is
 * dropped (the head said close: a request pipelined after the stream left
 * evhttp is not answered, as the client must expect), and past 16 KiB of it
 * the client is dropped too.
 */

struct rill_lean;
struct rill_conns;

struct rill_lean_ops {
    void (*drained)(void *arg);             /* the output fell to its low mark */
    void (*gone)(void *arg, int timed_out); /* the client left or stopped reading; freed after */
    void (*closed)(void *arg);              /* the end went out and the socket is closed; freed */
};

/* A lean stream's memory, before its connection is detached (so that cannot fail after). */
struct rill_lean *rill_lean_alloc(void);
void rill_lean_discard(struct rill_lean *l);
/*
 * Starts l on fd (now its own), pending holding what the connection had not
 * sent yet (taken over). cs counts it as a connection until it closes.
 */
void rill_lean_start(struct rill_lean *l, struct event_base *base, int fd, struct evbuffer *pending,
                     struct rill_conns *cs, const struct rill_lean_ops *ops, void *arg);
/* Sends head + buf (drained) + tail: at once when nothing waits before them, else buffered. */
void rill_lean_send(struct rill_lean *l, const char *head, size_t hn, struct evbuffer *buf,
                    const char *tail, size_t tn);
/* Bytes waiting for the client. */
size_t rill_lean_pending(const struct rill_lean *l);
/* Whether l takes no more bytes: a write failed (its event reports the client gone) or it ends. */
int rill_lean_stopped(const struct rill_lean *l);
/*
 * The stream ends: what is queued goes out, then the socket closes (after
 * the terminating chunk when clean), and closed runs. Never calls back
 * before it returns.
 */
void rill_lean_end(struct rill_lean *l, int clean);
/* Lean streams open now. */
int rill_lean_count(void);
/* At shutdown: every lean stream closes now, its client gone (gone runs for each). */
void rill_lean_close_all(void);

#endif
