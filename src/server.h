/* SPDX-License-Identifier: MIT */
#ifndef RILL_SERVER_H
#define RILL_SERVER_H
#include <stddef.h>

#include "listen.h"
#include "request.h"
#include "worker.h"

struct rill_server_config {
    struct rill_listen listen[RILL_MAX_LISTENS]; /* fd -1: bound at start; else the master's */
    int nlisten;
    const char *tls_cert, *tls_key; /* PEM files, for the https listeners */
    double grace;                   /* seconds in-flight requests get at shutdown */
    size_t max_header_bytes;        /* request line + headers */
    size_t max_body_bytes;
    double keepalive_timeout; /* seconds a connection may sit idle or stall mid-request; 0: none */
    double request_timeout;   /* seconds to read a whole request, from its first byte; 0: none */
    double header_timeout;    /* seconds to read a request head, from its first byte; 0: none */
    double min_rate;          /* bytes/s a head still arriving must keep up; 0: off */
    int max_connections;      /* past it a new connection gets a 503; 0: no limit */
    int backlog;              /* listen(2)'s queue of connections not accepted yet */
    const char *pid_file;     /* a single process's --pid-file: SIGUSR2 answers beside it */
};

#define RILL_MAX_BACKLOG 65535

struct rill_server;

/*
 * Binds, and prints "rill listening on http(s)://HOST:PORT" to stderr for
 * each listener. The handler is on the top of w->L's stack (popped). NULL
 * with a message in err.
 */
struct rill_server *rill_server_start(struct rill_worker *w, const struct rill_server_config *cfg,
                                      char *err, size_t errlen);
/*
 * With an inherited socket, accepting starts when the master says (the
 * worker is ready); else at start. 0, or -1 with a message in err.
 */
int rill_server_accept(struct rill_server *s, char *err, size_t errlen);
/*
 * A reload's drain: stops accepting, closes idle connections, ends every
 * further reply with Connection: close, and lets streams and requests in
 * flight go on for up to seconds; then they end (a stream with a jittered
 * retry:). The loop ends when none is left.
 */
void rill_server_drain(struct rill_server *s, double seconds);
/* As at SIGTERM: the master is gone. */
void rill_server_shutdown(struct rill_server *s);
/* Open client connections (the metrics' gauge). */
int rill_server_connections(const struct rill_server *s);
/* Runs the loop until a signal's graceful shutdown is over. */
void rill_server_run(struct rill_server *s);
void rill_server_free(struct rill_server *s);

/* r's client stopped reading and the inactivity timer drops it (conn.c): the log says timeout. */
void rill_server_timed_out(struct rill_request *r);
/* r's client left: its connection closed (conn.c). */
void rill_server_client_gone(struct rill_request *r);
/* r's lean stream ended and its socket is closed (lean.h): as evhttp's end of a reply. */
void rill_server_stream_done(struct rill_request *r);
/* The server's connections (for a stream leaving evhttp). */
struct rill_conns *rill_server_conns(struct rill_request *r);
/* Where r's reply is: the inactivity timer (conn.c) asks. */
enum rill_reply {
    RILL_REPLY_PENDING,   /* the handler works before its first byte */
    RILL_REPLY_STREAMING, /* a stream is open */
    RILL_REPLY_WHOLE,     /* a whole reply is being written */
};
enum rill_reply rill_server_reply(const struct rill_request *r);

#endif
