/* SPDX-License-Identifier: MIT */
#ifndef RILL_LISTEN_H
#define RILL_LISTEN_H
#include <stddef.h>

/* At most this many --listen addresses. */
#define RILL_MAX_LISTENS 8

/* One --listen address and, once bound, its socket. */
struct rill_listen {
    char host[256];
    int port; /* 0: an ephemeral port */
    int tls;  /* https:// */
    int fd;   /* -1 until bound (a worker inherits the master's) */
};

/*
 * HOST:PORT, [V6]:PORT or :PORT (every address), after an optional http://
 * or https://. 0, or -1: not an address.
 */
int rill_listen_parse(const char *arg, struct rill_listen *l);
/*
 * The listening socket of l (TCP_NODELAY, close-on-exec, non-blocking) into
 * l->fd: 0, or -1 with a message in err.
 */
int rill_listen_bind(struct rill_listen *l, int backlog, char *err, size_t errlen);
/* Prints "rill listening on http(s)://HOST:PORT" to stderr, with the port bound. */
void rill_listen_announce(const struct rill_listen *l);

#endif
