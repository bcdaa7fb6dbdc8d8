/* SPDX-License-Identifier: MIT */
#ifndef RILL_SERVER_H
#define RILL_SERVER_H
#include <stddef.h>

#include "request.h"
#include "worker.h"

struct rill_server_config {
    const char *host;
    int port;                /* 0: an ephemeral port */
    double grace;            /* seconds in-flight requests get at shutdown */
    size_t max_header_bytes; /* request line + headers */
    size_t max_body_bytes;
    double keepalive_timeout; /* seconds a connection may sit idle or stall mid-request; 0: none */
    double request_timeout;   /* seconds to read a whole request, from its first byte; 0: none */
    int max_connections;      /* past it a new connection gets a 503; 0: no limit */
};

/* The idle timeout, to restore on a connection once a request that lifted it is done. */
const struct timeval *rill_server_idle_timeout(struct rill_server *s);

struct rill_server;

/*
 * Binds, and prints "rill listening on http://HOST:PORT" to stderr. The
 * handler is on the top of w->L's stack (popped). NULL with a message in err.
 */
struct rill_server *rill_server_start(struct rill_worker *w, const struct rill_server_config *cfg,
                                      char *err, size_t errlen);
/* Runs the loop until a signal's graceful shutdown is over. */
void rill_server_run(struct rill_server *s);
void rill_server_free(struct rill_server *s);

/* r's client left: its connection closed (conn.c). */
void rill_server_client_gone(struct rill_request *r);
/* r's whole reply is being written: its handler is done and it is no stream. */
int rill_server_reply_in_flight(const struct rill_request *r);

#endif
