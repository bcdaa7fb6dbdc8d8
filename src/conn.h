/* SPDX-License-Identifier: MIT */
#ifndef RILL_CONN_H
#define RILL_CONN_H
#include <stddef.h>

#include <event2/http.h>

/*
 * The server's connections, from accept to close, around what evhttp does
 * with them: admission (--max-connections: past it a 503, then close), a gate
 * that reads each request head as raw bytes before evhttp may parse it
 * (headscan.c: 414, 431, the 400s evhttp cannot see), a deadline for
 * reading a whole request (--request-timeout: a client dripping bytes is cut
 * off, which evhttp's inactivity timer never does, notes/evhttp.md Q3), and
 * a head's own time and rate (--header-timeout, --min-rate: a head dripped
 * byte by byte is cut off within seconds), the inactivity timer itself
 * (--keepalive-timeout), and the listener: accepting pauses when the process
 * runs out of file descriptors, and resumes when a connection closes.
 */

struct rill_conns;
struct rill_conn;
struct rill_request;

struct rill_conns_config {
    size_t max_header_bytes;
    double request_timeout; /* seconds from a request's first byte to its last; 0: none */
    double idle_timeout;    /* seconds a connection may stay silent or not read; 0: none */
    double header_timeout;  /* seconds from a head's first byte to its end; 0: none */
    double min_rate;        /* bytes/s a head must keep coming at, after its first second; 0: off */
    int max_connections;    /* 0: no limit */
};

struct rill_tls;
struct rill_conns *rill_conns_new(struct event_base *base, const struct rill_conns_config *cfg);
/* Gates the connections of http: TLS ones when tls is set (tls.h), else plain. */
void rill_conns_serve(struct rill_conns *cs, struct evhttp *http, struct rill_tls *tls);
/* After evhttp_free: every connection is closed by then. */
void rill_conns_free(struct rill_conns *cs);
int rill_conns_count(const struct rill_conns *cs);
/* Closes the connections that wait for their next request (a drain). */
void rill_conns_close_idle(struct rill_conns *cs);
/* fn(arg) is called after each connection closes (a drain waits for the last one). */
void rill_conns_on_close(struct rill_conns *cs, void (*fn)(void *), void *arg);

struct evconnlistener;
/*
 * The n listeners new connections come from (evhttp_bound_socket_get_listener),
 * or none before they are freed: conn.c pauses and resumes them together.
 */
void rill_conns_listen(struct rill_conns *cs, struct evconnlistener **levs, int n);

/* The connection req came on; NULL if it got no gate (out of memory at accept). */
struct rill_conn *rill_conn_of(struct rill_conns *cs, struct evhttp_request *req);

/*
 * evhttp read a whole request on c and hands it to us. Returns 0 when it may
 * go on; else the request is the stand-in for a head the gate refused, and
 * the status (400, 414, 431) and *why are what to answer, closing.
 */
int rill_conn_dispatched(struct rill_conn *c, struct evhttp_request *req, const char **why);

/* Whether c came through a TLS listener (req.scheme "https"). */
int rill_conn_tls(const struct rill_conn *c);
/* The reply on c was cut off: its close must not look like a clean end (no TLS close_notify). */
void rill_conn_cut(struct rill_conn *c);

/* The request c serves now (its close is reported to it), or NULL once it is done. */
void rill_conn_attach(struct rill_conn *c, struct rill_request *r);
/*
 * evhttp sent the whole reply to req (its on_complete): c may read its next
 * request, or, when req's streamed body was not read to its end, c closes
 * as its reply said, lingering a second at most so the reply is not lost.
 */
void rill_conn_replied(struct rill_conn *c, struct evhttp_request *req);

/*
 * A streamed request body: on a path registered as streamed (reqbody.h),
 * the gate keeps a cleanly framed body from evhttp, which dispatches the
 * request at its head, and decodes it itself, a window at a time, while the
 * handler reads it.
 */
enum rill_body_status {
    RILL_BODY_WAIT, /* nothing to read now: news comes with rill_body_news */
    RILL_BODY_DATA, /* bytes to read */
    RILL_BODY_END,  /* all read */
    RILL_BODY_BAD,  /* its chunked framing is broken: a 400, and the connection closes */
};
/* Whether the request on c has a streamed body; its declared length then (-1: chunked). */
int rill_conn_body_streamed(const struct rill_conn *c, long long *length);
/* Where the body stands: *avail decoded bytes to read, *why for BAD. */
enum rill_body_status rill_conn_body_status(const struct rill_conn *c, size_t *avail,
                                            const char **why);
/* Moves n (at most *avail) decoded bytes into out; the gate then reads on. */
void rill_conn_body_remove(struct rill_conn *c, char *out, size_t n);
/* The reader waits for bytes: a client that asked for it gets its 100 Continue now. */
void rill_conn_body_want(struct rill_conn *c, int replied);
/* The body was not read to its end: the reply says Connection: close. */
int rill_conn_body_unfinished(const struct rill_conn *c);
/*
 * The request was answered before its body was read: from now on what the
 * client sends is dropped (none of it may be taken for a request), and its
 * reply's end closes c with a linger (rill_conn_replied).
 */
void rill_conn_body_abandon(struct rill_conn *c);
/*
 * c's socket leaves evhttp for a lean stream (lean.h): what its output
 * still holds goes to pending, evhttp's connection, request and bufferevent
 * and c itself are freed, and *fd is the caller's (still counted as a
 * connection until rill_conns_released). -1 when it cannot: TLS, bytes
 * from the client waiting (a pipelined request), or a libevent whose
 * connection is not laid out as 2.1.12's; nothing changed then.
 */
int rill_conn_detach(struct rill_conn *c, int *fd, struct evbuffer *pending);
/* Whether rill_conn_detach could take c now (asked before a stream's head promises a close). */
int rill_conn_may_detach(const struct rill_conn *c);
/* A lean stream's socket closed: one connection fewer. */
void rill_conns_released(struct rill_conns *cs);
/* --keepalive-timeout in seconds (0: none). */
double rill_conns_idle_timeout(const struct rill_conns *cs);
/* A reply's head is about to be queued on c (after a TLS 100 Continue, evhttp's callback is back).
 */
void rill_conn_reply_begins(struct rill_conn *c);

#endif
