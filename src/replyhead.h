/* SPDX-License-Identifier: MIT */
#ifndef RILL_REPLYHEAD_H
#define RILL_REPLYHEAD_H
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * The head of every reply rill sends, and the framing it announces, decided
 * in one place (DESIGN "Wire framing belongs to rill"): handler replies,
 * streams, errors and refusals alike. A handler chooses the status and its
 * own headers; the framing fields are rill's, so a reply is framed exactly
 * one way whatever a handler copied onto it (an upstream's headers).
 */

/* What the body of a reply is, for its framing. */
enum rill_body { RILL_BODY_WHOLE, RILL_BODY_STREAM };

struct rill_framing {
    int status;
    size_t len;           /* a whole body's length: what GET gets, also for HEAD */
    unsigned body : 1;    /* body bytes follow the head: never for HEAD, 204 or 304 */
    unsigned length : 1;  /* Content-Length: len */
    unsigned chunked : 1; /* Transfer-Encoding: chunked (an HTTP/1.1 stream) */
    unsigned close : 1;   /* Connection: close, and the connection closes after */
    unsigned keep : 1;    /* Connection: keep-alive (an HTTP/1.0 client that asked) */
    unsigned typed : 1;   /* a Content-Type goes out (the default when the handler set none) */
};

/*
 * 1 for the hop-by-hop and framing fields of RFC 9110 §7.6.1 (Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade,
 * Proxy-Connection): a handler's are never written as given.
 */
int rill_is_framing_field(const char *name);

/* From now on every reply says Connection: close and closes (a worker draining). */
void rill_framing_close_all(void);

/* Whether a comma-separated field value (Connection) lists token, case-insensitively. */
int rill_lists_token(const char *value, const char *token);

/*
 * The framing of a reply to req with this status (200-599). want_close: the
 * handler's Connection said close. An HTTP/1.0 stream is close-delimited.
 */
struct rill_framing rill_framing_decide(struct evhttp_request *req, int status, enum rill_body kind,
                                        size_t len, int has_body, int want_close);

/*
 * Writes a whole reply to req: the head (req's output headers, which must
 * hold no framing field, and f's framing), then body when f->body, and hands
 * req back to evhttp, which finishes once the bytes are out. req is not
 * ours after this.
 */
void rill_reply_whole(struct evhttp_request *req, struct event_base *base,
                      const struct rill_framing *f, const char *body);

/*
 * As rill_reply_whole, with f->len bytes of the file fd from offset as the
 * body (sendfile on a plain connection). fd is closed, by this or once sent.
 * -1: nothing was sent (out of memory, or the file cannot be mapped); req is
 * still the caller's.
 */
int rill_reply_file(struct evhttp_request *req, struct event_base *base,
                    const struct rill_framing *f, int fd, off_t offset);

/* A short text/plain reply of rill's own (a refusal, an error); closes when close. */
void rill_reply_plain(struct evhttp_request *req, struct event_base *base, int status,
                      const char *body, int close);

/*
 * Starts a streamed reply to req: its head goes out now, and evhttp takes
 * the reply as started (chunks and the end go through evhttp). The output
 * headers are cleared but for Connection: close, which ends the connection
 * after the stream. scratch must be empty; it is left empty.
 */
void rill_reply_start_stream(struct evhttp_request *req, struct event_base *base,
                             struct evbuffer *scratch, const struct rill_framing *f);

/* RFC 9110's reason phrase (evhttp 2.1.12 says "Client Error" for a 429). */
const char *rill_status_reason(int status);

#endif
