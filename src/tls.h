/* SPDX-License-Identifier: MIT */
#ifndef RILL_TLS_H
#define RILL_TLS_H
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

/*
 * The server side of TLS (--listen https://...): one certificate for every
 * https listener, loaded at start and again at a single process's SIGHUP.
 */
struct rill_tls;

/*
 * Loads cert (a PEM chain: the leaf first) and key. NULL with one line in
 * err naming the file and what is wrong with it.
 */
struct rill_tls *rill_tls_new(const char *cert, const char *key, char *err, size_t errlen);
/*
 * Loads the files again (renewed certificates): new connections use them,
 * those open keep theirs. -1 with a line in err: the old ones stay.
 */
int rill_tls_reload(struct rill_tls *t, char *err, size_t errlen);
/* A server-side TLS bufferevent with no socket yet (evhttp sets it); NULL: out of memory. */
struct bufferevent *rill_tls_bufferevent(struct rill_tls *t, struct event_base *base);
/* Whether bev's handshake is done: what is written now is sent, not queued for later. */
int rill_tls_ready(struct bufferevent *bev);
/*
 * A clean end of bev's connection: TLS's close_notify, sent now (once, best
 * effort), so a client can tell it from a truncation.
 */
void rill_tls_close_notify(struct bufferevent *bev);
/*
 * After bev's read limit is lifted: bytes OpenSSL decrypted but could not
 * hand over under the limit are read now (the socket may never be readable
 * again for them: they are in the SSL, not the kernel).
 */
void rill_tls_kick(struct bufferevent *bev);
/* Whether bev is a TLS bufferevent: nothing may be written to its socket directly. */
int rill_tls_is(struct bufferevent *bev);
void rill_tls_free(struct rill_tls *t);

#endif
