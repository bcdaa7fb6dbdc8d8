/* SPDX-License-Identifier: MIT */
#ifndef RILL_REQUEST_H
#define RILL_REQUEST_H
#include <event2/event_struct.h>
#include <event2/http.h>
#include <lua.h>

#include "accesslog.h"
#include "sched.h"
#include "timedq.h"

struct rill_server;
struct rill_beats;

/*
 * One HTTP request being handled: owns its task (the handler coroutine) and
 * borrows evhttp's request until it is handed back (reply sent, stream ended,
 * or client gone). Created and freed only by server.c.
 */
struct rill_request {
    struct rill_task task; /* first member: the task of a request is the request */
    struct rill_server *srv;
    struct evhttp_request *req; /* NULL once handed back to evhttp */
    unsigned slot;              /* of the Lua `req` (request.c), while it may read r; 0: none */
    unsigned long serial;       /* tells r from a later request in the same slot */
    struct rill_request *prev, *next;
    struct rill_conn *conn;    /* the connection, until the reply is done or the client left */
    struct subscription *pump; /* a hub subscription C feeds the stream from (out.pump) */
    int pump_ref; /* its Lua object, anchored while pumped; or out.drive's coroutine, till adopted
                   */
    char id[72];
    char trace[33];           /* the trace id, 32 hex digits; "": not yet known */
    char trace_flags[3];      /* the incoming traceparent's flags & 0x03, else "01" */
    struct rill_access *log;  /* the access log's record (accesslog.h); NULL: no log */
    struct rill_outcome out;  /* what it did: status, bytes, how it ended (metrics and log) */
    struct rill_tq_link beat; /* an SSE stream's place in its heartbeat queue */
    struct rill_beats *beats; /* that queue (response.c); NULL: no heartbeats */
    unsigned long wrote_at;   /* the worker's resume count at the last direct write */
    struct rill_gz *gz; /* a gzip'd stream's own compressor (compress.h), made at its first chunk */
    struct rill_gzs *gzs;      /* a gzip'd pumped stream's part of its topic's shared compression */
    struct rill_reqbody *body; /* its body reader's state (reqbody.h), made at its first read */
    struct rill_lean *lean;    /* a stream taken off evhttp (lean.h): req and conn are NULL */
    struct rill_stash *stash;  /* what its `req` reads once evhttp's request is gone (request.c) */
    unsigned responded : 1;    /* a reply was sent or started */
    unsigned streaming : 1;    /* a chunked reply is open */
    unsigned watching : 1;     /* our close callback is armed */
    unsigned wait_drain : 1;   /* the body waits for the client to read */
    unsigned gone : 1;         /* the client disconnected */
    unsigned completed : 1;    /* evhttp flushed the reply */
    unsigned sse : 1;         /* an event stream (rill.sse): heartbeats, retry jitter at shutdown */
    unsigned tls : 1;         /* it came on an https listener: req.scheme, no direct writes */
    unsigned gz_on : 1;       /* its body is gzip'd (Content-Encoding sent): by gz, or gzs */
    unsigned gz_broken : 1;   /* its compressor failed (out of memory): the stream ends cut off */
    unsigned lean_ok : 1;     /* its head said close for a lean stream (response.c out_start) */
    unsigned lean_wanted : 1; /* its first pump turn takes it off evhttp, if it can (lean.h) */
    unsigned drive : 1;       /* out.drive took a generator: its task adopts it at its end */
};

/* The request of the running handler; raises outside one (e.g. in rill.run). */
struct rill_request *rill_request_current(lua_State *L);
/* Pushes the Lua view `req` of r: fields are computed on first access. */
void rill_request_push(lua_State *L, struct rill_request *r);
/*
 * Pushes r's method and decoded path (the router's keys), keeping the path for
 * req.path; path is the decoded path when the caller has it (NULL: decoded here).
 */
void rill_request_push_route(lua_State *L, struct rill_request *r, int view, const char *path,
                             size_t len);
/*
 * Copies what r's Lua view reads from evhttp's request (its target, headers,
 * peer) into r->stash, so the view still reads them once evhttp's request is
 * freed (a lean generator stream). Only for a request with no body. -1: out
 * of memory.
 */
int rill_request_stash(struct rill_request *r);
/* Cuts the Lua view off r (the request is over: uncached fields raise). */
void rill_request_detach(struct rill_request *r);
/* "GET", "POST", ... */
const char *rill_method_name(enum evhttp_cmd_type cmd);
/*
 * req.remote_addr of a request from peer: peer, or behind a --trust-proxy
 * proxy the client its header names, into out (cap >= RILL_PROXY_ADDR_CAP).
 */
const char *rill_request_client(struct evhttp_request *req, const char *peer, char *out,
                                size_t cap);
/* In a forked worker, before any request: its random ids are its own, not its parent's. */
void rill_random_forked(void);
/* The request's trace id (32 hex digits), decided once; NULL if it was never needed and its head
 * is gone. */
const char *rill_request_trace(struct rill_request *r);
/* The request id: x-request-id when valid, else the trace id (rill_request_traceparent). */
const char *rill_request_id(struct rill_request *r);
/*
 * A traceparent for a call this request makes (rill.fetch), into out: version
 * 00, the request's trace id (a valid incoming traceparent's, else a new one),
 * a new random span id, the incoming flags (else 01).
 */
void rill_request_traceparent(struct rill_request *r, char out[56]);

#endif
