/* SPDX-License-Identifier: MIT */
/*
 * Connections. evhttp lets us make each connection's bufferevent
 * (evhttp_set_bevcb); on its input buffer we set a callback that sees every
 * byte before evhttp's read callback does. While a request head is arriving
 * the gate moves the bytes aside (c->held) and scans them; evhttp gets the
 * head once it is whole and clean, with whatever followed it. A refused head
 * is replaced by a stand-in request, so that evhttp, in its own order after
 * any pipelined reply, hands us something to answer with the refusal and a
 * close; all later bytes are dropped. After a head is released the gate lets
 * bytes through (the body is evhttp's) until evhttp dispatches the request,
 * then it scans what follows as the next head.
 *
 * A body on a path registered as streamed (reqbody.h) is the gate's
 * instead: evhttp gets its head without the framing fields, so it dispatches
 * the request at once, and the gate decodes the body as it comes, a window
 * at a time, while the handler reads it (GATE_STREAM). Only a body framed
 * the one clean way is taken (headframe.h); anything else is evhttp's, and
 * refused or bounded as before.
 *
 * evhttp has no hook for a new connection object, so the bevcb queues the
 * connection and an event right after accept finds the evhttp_connection
 * (the bufferevent's callback argument) and sets our close callback on it:
 * from then on, evhttp_connection_free tells us. Connections are found from
 * a request by their fd.
 *
 * What conn.c must never do: let a client hold a descriptor without limit.
 * A shed connection lingers a second at most; a head has --header-timeout
 * and a minimum rate; a client that does not read is dropped even while a
 * stream keeps adding heartbeats (progress is what the kernel took, not what
 * we queued); and when accept runs out of descriptors the listener pauses
 * instead of failing in a loop (libevent would retry and log at once, forever).
 */
#include "conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "headframe.h"
#include "headscan.h"
#include "listen.h"
#include "log.h"
#include "reqbody.h"
#include "sched.h"
#include "server.h"
#include "timedq.h"
#include "tls.h"

enum gate {
    GATE_HEAD,    /* a head is arriving: bytes are held and scanned */
    GATE_BODY,    /* evhttp reads a chunked body: its framing is scanned as it arrives */
    GATE_PASS,    /* evhttp is reading a released head and its body */
    GATE_DISCARD, /* refused or shed: every byte from now on is dropped */
    GATE_STREAM,  /* a streamed body: its bytes are the gate's (c->sb) */
    GATE_WAIT,    /* a streamed head behind a reply in flight: left in the input until it is done */
};

/*
 * A streamed body, from its head to the request's end. Before evhttp
 * dispatches the request, what follows the head waits undecoded in raw (a
 * read or two); then it is decoded into data, and the input is read only
 * while data holds less than BODY_WINDOW. Past that the input fills to its
 * high mark and the bufferevent stops reading: the client waits for the
 * handler.
 */
struct streamed {
    struct evbuffer *raw;          /* bytes after the head, not decoded yet */
    struct evbuffer *data;         /* decoded, not read yet */
    struct rill_chunkscan *chunks; /* a chunked body's decoder; NULL: a length */
    uint64_t left;                 /* a length: bytes still to come */
    long long length;              /* the declared length; -1: chunked */
    const char *why;               /* bad: the framing error */
    unsigned dispatched : 1, done : 1, bad : 1, expect : 1, continued : 1;
    unsigned waited : 1;    /* its reader waits for bytes (the idle timer's stalled body) */
    unsigned abandoned : 1; /* its request was answered: what comes is dropped */
};

/* Decoded bytes a streamed body may hold for its reader before the gate stops reading. */
#define BODY_WINDOW (64 * 1024)
/* Undecoded bytes it may hold before evhttp dispatched its head: then reading pauses. */
#define BODY_RAW_MAX (256 * 1024)

/*
 * A head's scanner, then its chunked body's (never both at once). A head
 * that arrives whole, as most do, is scanned in one place for the whole
 * process (scratch); a connection has its own only while a head is held or
 * a chunked body read, so an idle or streaming connection holds none.
 */
union scanner {
    struct rill_headscan head;
    struct rill_chunkscan body;
};

static union scanner scratch; /* one worker per process, one scan at a time */

struct rill_conn {
    struct rill_conns *set;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* NULL until set up */
    struct evbuffer_cb_entry *input_cb;
    struct rill_request *req; /* the request being served */
    struct evbuffer *held;    /* head bytes evhttp has not seen (GATE_HEAD) */
    size_t scanned;           /* of held */
    union scanner *sc;        /* while a head is held or a chunked body read; else NULL */
    struct streamed *sb;      /* the request's streamed body, until its reply is done */
    enum gate gate;
    int refused; /* the status the stand-in request answers */
    const char *why;
    int fd;
    unsigned admitted : 1, moving : 1, body_timed : 1, head_timed : 1, tls : 1, doomed : 1;
    unsigned hs_timed : 1; /* the deadline times the TLS handshake (until the first byte) */
    unsigned cut : 1;      /* a reply on it was cut off: its close says so (no close_notify) */
    unsigned busy : 1;     /* a request was dispatched and its reply is not done */
    /* evhttp's write callback, put aside while a TLS 100 Continue goes out (rill_conn_reply_begins)
     */
    bufferevent_data_cb continue_writecb;
    struct rill_tq_link deadline; /* stamped when the request being read began */
    struct rill_tq_link idle;     /* stamped when last seen active */
    struct rill_tq_link linger;   /* stamped when shed */
    struct evbuffer_cb_entry *output_cb;
    size_t drained;               /* bytes the kernel took from the output, in all */
    size_t drained_seen;          /* of those, when last seen active */
    struct event *head_ev;        /* --header-timeout, --min-rate; made when first needed */
    struct timeval head_start;    /* when the head being read began */
    struct rill_conn *fresh_next; /* accepted, not set up yet */
};

struct rill_conns {
    struct event_base *base;
    size_t max_header_bytes;
    int max, count;
    struct rill_conn **by_fd;
    int nfds;
    struct rill_conn *fresh;
    struct event *setup_ev;
    struct rill_tq deadlines; /* --request-timeout */
    struct rill_tq idle;      /* --keepalive-timeout */
    struct rill_tq linger;    /* shed connections, closed a second later at most */
    struct timeval head_span; /* --header-timeout; 0: none */
    double min_rate;          /* --min-rate; 0: off */
    struct rill_tls *tls;     /* the https listeners' certificate */
    struct evconnlistener *listeners[RILL_MAX_LISTENS];
    int nlisteners;
    struct event *resume_ev; /* accepting again, when no connection closed first */
    int paused;
    struct timeval logged_at;  /* the last "cannot accept" line */
    long unlogged;             /* pauses since */
    void (*closed_fn)(void *); /* after each close */
    void *closed_arg;
};

/* How long a shed connection may wait for its client to close, after its 503. */
#define LINGER_SECONDS 1.0
/* How soon a listener paused for want of descriptors tries again, if none closed. */
#define RESUME_SECONDS 0.1
/* Seconds between two "cannot accept" lines. */
#define ACCEPT_LOG_EVERY 60

/*
 * What a refused head turns into: evhttp parses it, and on_request answers
 * the refusal. A HEAD's refusal must have no body either, so its stand-in is
 * a HEAD too.
 */
static const char STAND_IN[] = "GET / HTTP/1.1\r\nHost: rill\r\nConnection: close\r\n\r\n";
static const char STAND_IN_HEAD[] = "HEAD / HTTP/1.1\r\nHost: rill\r\nConnection: close\r\n\r\n";

/* Whether the bytes of buf from at on begin a HEAD request. */
static int is_head(struct evbuffer *buf, size_t at)
{
    char method[5];
    struct evbuffer_ptr ptr;
    if (evbuffer_get_length(buf) < at + sizeof method ||
        evbuffer_ptr_set(buf, &ptr, at, EVBUFFER_PTR_SET) != 0)
        return 0;
    return evbuffer_copyout_from(buf, &ptr, method, sizeof method) == sizeof method &&
           memcmp(method, "HEAD ", sizeof method) == 0;
}

/* What ends a refused chunked body, in place of its bad line: the request is then answered. */
static const char BODY_END[] = "\r\n0\r\n\r\n";

/*
 * The request deadline, the inactivity timer and the linger of shed
 * connections are each a timed queue of connections (timedq.h).
 */

/* ---- the deadline of reading a request ----------------------------------------------- */

/* A request began arriving: its clock runs, unless a reply on c is in flight. */
static void deadline_start(struct rill_conn *c)
{
    struct rill_tq *q = &c->set->deadlines;
    if (c->deadline.queued || c->req || !evutil_timerisset(&q->span))
        return;
    rill_tq_append(q, c);
}

static void deadline_stop(struct rill_conn *c)
{
    rill_tq_remove(&c->set->deadlines, c);
}

static void send_raw(struct rill_conn *c, const char *bytes)
{
    if (c->tls) { /* through the cipher; linger() then gives it time to leave */
        bufferevent_data_cb readcb;
        bufferevent_event_cb eventcb;
        void *arg;
        /* evhttp's write callback is for a reply of its own, and none is in flight */
        bufferevent_getcb(c->bev, &readcb, NULL, &eventcb, &arg);
        bufferevent_setcb(c->bev, readcb, NULL, eventcb, arg);
        bufferevent_write(c->bev, bytes, strlen(bytes));
        bufferevent_enable(c->bev, EV_WRITE); /* evhttp keeps writing off between replies */
        return;
    }
    /* nothing is queued in the bufferevent: no reply is in flight on c */
    (void)!send(c->fd, bytes, strlen(bytes), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void linger(struct rill_conn *c);

/*
 * c is done: an answer of ours (a 408), if any, then the close. A plain
 * connection's answer went to the kernel already; a TLS one's is still in
 * the bufferevent, so c lingers, reading nothing, until it is out (a second
 * at most). A handshake never finished gets no answer: there is no channel.
 */
static void close_with(struct rill_conn *c, const char *answer)
{
    if (!c->tls) {
        if (answer)
            send_raw(c, answer);
        evhttp_connection_free(c->evcon); /* our close callback frees c */
        return;
    }
    if (answer && rill_tls_ready(c->bev))
        send_raw(c, answer);
    linger(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct rill_conns *cs = arg;
    struct rill_conn *c;
    struct timeval now;
    (void)fd, (void)what;
    rill_tq_now(&now);
    while ((c = rill_tq_due(&cs->deadlines, &now)) != NULL) {
        deadline_stop(c);
        if (c->req)
            continue; /* a reply is in flight: the clock restarts when it is done */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)))
            continue; /* a refusal is being written, closing after: let it finish */
        if (c->gate == GATE_DISCARD && c->linger.queued)
            continue; /* shed, or closing already: the linger ends it */
        if (c->hs_timed) {
            c->hs_timed = 0;
            if (rill_tls_ready(c->bev))
                continue; /* shook hands, and sent nothing yet: idle, as a plain connection is */
            close_with(c, NULL); /* a stalled handshake: nothing can be said */
            continue;
        }
        close_with(c, c->gate == GATE_DISCARD
                          ? NULL
                          : "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n");
    }
    rill_tq_arm(&cs->deadlines);
}

/* ---- a head's own time and rate (--header-timeout, --min-rate) --------------------------- */

/*
 * As Apache's mod_reqtimeout with header=1-20,MinRate=500: a head has one
 * second from its first byte, plus one second for every min_rate bytes of it
 * that came, and never more than --header-timeout. A client dripping a byte
 * at a time is cut off within about a second; a head that comes whole in one
 * read is never timed at all, as the clock runs only for a head still
 * incomplete after a read (held). The timer fires when the head was due as
 * of its arming; bytes that came since only make it later, so it is armed
 * again then, and a read costs nothing.
 */
static void head_due(const struct rill_conn *c, struct timeval *due)
{
    const struct rill_conns *cs = c->set;
    struct timeval allowed = cs->head_span;
    if (cs->min_rate > 0) {
        size_t got = c->held ? evbuffer_get_length(c->held) : 0;
        double s = 1 + (double)got / cs->min_rate;
        s = s < 1e9 ? s : 1e9; /* a tiny rate: no overflow of time_t */
        struct timeval by_rate = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
        if (!evutil_timerisset(&allowed) || timercmp(&by_rate, &allowed, <))
            allowed = by_rate;
    }
    timeradd(&c->head_start, &allowed, due);
}

static void head_arm(struct rill_conn *c)
{
    struct timeval now, due, wait = {0, 0};
    rill_tq_now(&now);
    head_due(c, &due);
    if (timercmp(&due, &now, >))
        timersub(&due, &now, &wait);
    event_add(c->head_ev, &wait);
}

static void on_head_time(evutil_socket_t fd, short what, void *arg)
{
    struct rill_conn *c = arg;
    struct timeval now, due;
    (void)fd, (void)what;
    rill_tq_now(&now);
    head_due(c, &due);
    if (timercmp(&due, &now, >)) {
        head_arm(c); /* more of the head came since: it has longer */
        return;
    }
    c->head_timed = 0;
    /* a refusal still being written goes out whole, then the connection closes as it says */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)))
        return;
    close_with(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/* A head is incomplete after a read: its clock runs, unless a reply on c is in flight. */
static void head_clock_start(struct rill_conn *c)
{
    struct rill_conns *cs = c->set;
    if (c->head_timed || c->req || !c->evcon || !c->held)
        return;
    if (!evutil_timerisset(&cs->head_span) && cs->min_rate <= 0)
        return;
    if (!c->head_ev && !(c->head_ev = evtimer_new(cs->base, on_head_time, c)))
        return; /* out of memory: --request-timeout still holds */
    rill_tq_now(&c->head_start);
    c->head_timed = 1;
    head_arm(c);
}

static void head_clock_stop(struct rill_conn *c)
{
    if (c->head_timed)
        evtimer_del(c->head_ev);
    c->head_timed = 0;
}

/* ---- the inactivity timer (--keepalive-timeout) ----------------------------------------- */

/*
 * Not evhttp's timeouts (see the timed queues): a connection is stamped when
 * bytes arrive at the gate and when a reply is done. What the queue cannot
 * see is looked at when a connection's time is up: a handler working before
 * its first byte, an output that moved, or a stream with nothing waiting to
 * be written (idle, which a stream may be for hours) counts as activity; a
 * body evhttp reads past the gate gets evhttp's read timeout for the rest of
 * it. So a client is dropped after one to two timeouts of silence, or of not
 * reading what it was sent.
 */

/* c is active now: to the back of the queue. */
static void idle_touch(struct rill_conn *c)
{
    struct rill_tq *q = &c->set->idle;
    if (!evutil_timerisset(&q->span) || !c->evcon)
        return;
    c->drained_seen = c->drained;
    rill_tq_append(q, c);
}

/*
 * Counts what leaves the output. Only a drain is the client's progress: the
 * output's length also moves when we add to it (a heartbeat every few
 * seconds would then keep a client that reads nothing forever).
 */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct rill_conn *c = arg;
    (void)buf;
    c->drained += info->n_deleted;
}

/* A body evhttp reads with the gate off: evhttp's read timeout watches it until dispatch. */
static void idle_hand_body_to_evhttp(struct rill_conn *c)
{
    rill_tq_remove(&c->set->idle, c);
    c->body_timed = 1;
    bufferevent_set_timeouts(c->bev, &c->set->idle.span, NULL);
}

/* The handler waits for a streamed body the client stopped sending. */
static int body_stalled(const struct rill_conn *c)
{
    const struct streamed *sb = c->sb;
    return sb && sb->waited && !sb->done && !sb->bad && !sb->abandoned &&
           evbuffer_get_length(sb->data) == 0;
}

/* c's time is up, unless it was active in a way the queue does not see. */
static void idle_expired(struct rill_conn *c)
{
    enum rill_reply reply = c->req ? rill_server_reply(c->req) : RILL_REPLY_WHOLE;
    size_t out = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->req && body_stalled(c)) {
        rill_tq_remove(&c->set->idle, c); /* the client stopped sending the body it waits for */
        rill_server_timed_out(c->req);
        evhttp_connection_free(c->evcon); /* our close callback frees c */
    } else if (c->req && reply == RILL_REPLY_PENDING) {
        idle_touch(c); /* lifted: however long a handler works before its first byte */
    } else if (!c->req && (c->gate == GATE_PASS || c->gate == GATE_BODY)) {
        idle_hand_body_to_evhttp(c);
    } else if (c->drained != c->drained_seen || (reply == RILL_REPLY_STREAMING && out == 0)) {
        idle_touch(c); /* the client read some of what it was sent, or a stream is idle */
    } else {
        rill_tq_remove(&c->set->idle, c);
        if (c->req)
            rill_server_timed_out(c->req);
        evhttp_connection_free(c->evcon); /* our close callback frees c */
    }
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct rill_conns *cs = arg;
    struct rill_conn *c;
    struct timeval now;
    (void)fd, (void)what;
    rill_tq_now(&now);
    /* each one looked at leaves the front: touched to the back, or gone */
    while ((c = rill_tq_due(&cs->idle, &now)) != NULL)
        idle_expired(c);
    rill_tq_arm(&cs->idle);
}

/* ---- the gate --------------------------------------------------------------------------- */

/*
 * While evhttp reads a released head and a plain body, the gate has nothing
 * to look at: its callback is off, so evhttp's many small drains cost nothing.
 */
static void set_gate(struct rill_conn *c, enum gate gate)
{
    struct evbuffer *input = bufferevent_get_input(c->bev);
    c->gate = gate;
    if (!c->input_cb)
        return;
    if (gate == GATE_PASS)
        evbuffer_cb_clear_flags(input, c->input_cb, EVBUFFER_CB_ENABLED);
    else
        evbuffer_cb_set_flags(input, c->input_cb, EVBUFFER_CB_ENABLED);
}

/*
 * Puts bytes in front of evhttp. A socket bufferevent keeps the end of its
 * input frozen except while it reads from the socket; a TLS one never
 * freezes it (and must not find it frozen: its reads would stop).
 */
static void input_add(const struct rill_conn *c, struct evbuffer *input, struct evbuffer *from,
                      const char *bytes, size_t len)
{
    if (!c->tls)
        evbuffer_unfreeze(input, 0);
    if (from)
        evbuffer_add_buffer(input, from);
    else
        evbuffer_add(input, bytes, len);
    if (!c->tls)
        evbuffer_freeze(input, 0);
}

/* Moves the last n bytes of the input to dst (NULL: drops them), without calling ourselves back. */
static void take_tail(struct rill_conn *c, struct evbuffer *buf, size_t n, struct evbuffer *dst)
{
    size_t keep = evbuffer_get_length(buf) - n;
    struct evbuffer *front = keep ? evbuffer_new() : NULL;
    if (keep && !front) { /* out of memory: nothing on this connection can be trusted now */
        c->moving = 1;
        evbuffer_drain(buf, evbuffer_get_length(buf));
        c->moving = 0;
        set_gate(c, GATE_DISCARD);
        return;
    }
    c->moving = 1;
    if (front)
        evbuffer_remove_buffer(buf, front, keep);
    if (dst)
        evbuffer_add_buffer(dst, buf);
    else
        evbuffer_drain(buf, n);
    if (front) {
        input_add(c, buf, front, NULL, 0);
        evbuffer_free(front);
    }
    c->moving = 0;
}

static void give_to_evhttp(struct rill_conn *c, const char *bytes, size_t len)
{
    struct evbuffer *input = bufferevent_get_input(c->bev);
    c->moving = 1;
    input_add(c, input, bytes ? NULL : c->held, bytes, len);
    c->moving = 0;
}

static void held_clear(struct rill_conn *c)
{
    head_clock_stop(c);
    if (c->held)
        evbuffer_free(c->held);
    c->held = NULL;
    c->scanned = 0;
}

/* The connection's own scanner, no longer needed. */
static void scanner_drop(struct rill_conn *c)
{
    free(c->sc);
    c->sc = NULL;
}

/* A head scanned in sc was refused. */
static void refuse(struct rill_conn *c, const union scanner *sc, int head)
{
    c->refused = sc->head.status;
    c->why = sc->head.why;
    held_clear(c);
    scanner_drop(c);
    deadline_stop(c);
    set_gate(c, GATE_DISCARD);
    if (head)
        give_to_evhttp(c, STAND_IN_HEAD, sizeof STAND_IN_HEAD - 1);
    else
        give_to_evhttp(c, STAND_IN, sizeof STAND_IN - 1);
}

/*
 * A chunked body went wrong k bytes before the end of the input: those bytes
 * (the bad line, which evhttp cannot have read yet: it reads whole lines) are
 * replaced by a last chunk, so evhttp hands the request over for a 400.
 */
static void refuse_body(struct rill_conn *c, size_t k)
{
    struct evbuffer *input = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(input);
    c->refused = 400;
    c->why = c->sc->body.why;
    scanner_drop(c);
    deadline_stop(c);
    set_gate(c, GATE_DISCARD);
    take_tail(c, input, k < len ? k : len, NULL);
    give_to_evhttp(c, BODY_END, sizeof BODY_END - 1);
}

static enum rill_scan_result feed_head(void *scanner, const char *p, size_t n, size_t *used)
{
    return rill_headscan_feed(scanner, p, n, used);
}

static enum rill_scan_result feed_body(void *scanner, const char *p, size_t n, size_t *used)
{
    return rill_chunkscan_feed(scanner, p, n, used);
}

/* Feeds buf from offset *at to its end to a scanner, in place; *at ends where it stopped. */
static enum rill_scan_result
feed_from(struct evbuffer *buf, size_t *at,
          enum rill_scan_result (*feed)(void *, const char *, size_t, size_t *), void *scanner)
{
    size_t len = evbuffer_get_length(buf);
    while (*at < len) {
        struct evbuffer_ptr ptr;
        struct evbuffer_iovec v;
        size_t used;
        evbuffer_ptr_set(buf, &ptr, *at, EVBUFFER_PTR_SET);
        evbuffer_peek(buf, -1, &ptr, &v, 1);
        enum rill_scan_result res = feed(scanner, v.iov_base, v.iov_len, &used);
        *at += used;
        if (res != RILL_SCAN_MORE)
            return res;
    }
    return RILL_SCAN_MORE;
}

/* Scans the last n bytes of the input as a chunked body, as evhttp is about to read them. */
static void scan_body(struct rill_conn *c, size_t n)
{
    struct evbuffer *input = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(input), at = len - n;
    enum rill_scan_result res = feed_from(input, &at, feed_body, &c->sc->body);
    if (res == RILL_SCAN_DONE) {
        scanner_drop(c);
        set_gate(c, GATE_PASS);
    } else if (res == RILL_SCAN_BAD) {
        refuse_body(c, c->sc->body.line + (len - at));
    }
}

/* ---- a streamed body ------------------------------------------------------------------ */

static void head_arrived(struct rill_conn *c, struct evbuffer *input, size_t n);

static void streamed_free(struct streamed *sb)
{
    if (sb->raw)
        evbuffer_free(sb->raw);
    if (sb->data)
        evbuffer_free(sb->data);
    free(sb->chunks);
    free(sb);
}

static void stream_free(struct rill_conn *c)
{
    if (c->sb)
        streamed_free(c->sb);
    c->sb = NULL;
}

static void stream_fail(struct streamed *sb, const char *why)
{
    if (!sb->bad)
        sb->why = why;
    sb->bad = 1;
}

static void on_chunk_data(void *arg, const char *p, size_t n)
{
    struct streamed *sb = arg;
    if (evbuffer_add(sb->data, p, n) != 0)
        stream_fail(sb, "out of memory");
}

/* Decodes what it can of the n bytes at p; returns how many of them were the body's. */
static size_t body_decode(struct streamed *sb, const char *p, size_t n)
{
    if (!sb->chunks) {
        size_t take = sb->left < n ? (size_t)sb->left : n;
        if (evbuffer_add(sb->data, p, take) != 0)
            stream_fail(sb, "out of memory");
        sb->left -= take;
        sb->done = sb->left == 0;
        return take;
    }
    size_t used = n;
    enum rill_scan_result res = rill_chunkscan_feed(sb->chunks, p, n, &used);
    if (res == RILL_SCAN_DONE)
        sb->done = 1;
    else if (res == RILL_SCAN_BAD)
        stream_fail(sb, sb->chunks->why);
    return used;
}

/* The body's end: what came after it is the next request's, in front of evhttp again. */
static void body_ended(struct rill_conn *c)
{
    struct streamed *sb = c->sb;
    struct evbuffer *input = bufferevent_get_input(c->bev);
    c->moving = 1;
    if (!c->tls)
        evbuffer_unfreeze(input, 0);
    if (sb->dispatched) /* raw was ahead of what the input holds */
        evbuffer_prepend_buffer(input, sb->raw);
    else /* the input holds the head evhttp has yet to read, and nothing after it */
        evbuffer_add_buffer(input, sb->raw);
    if (!c->tls)
        evbuffer_freeze(input, 0);
    c->moving = 0;
    if (!sb->dispatched) {
        set_gate(c, GATE_PASS); /* scanned as a head once evhttp dispatched this one */
        return;
    }
    set_gate(c, GATE_HEAD);
    size_t buffered = evbuffer_get_length(input);
    if (buffered)
        head_arrived(c, input, buffered);
}

/*
 * Decodes what the body has waiting (raw first, then, once evhttp dispatched
 * the request, the input) until its reader's window is full or it ends. A
 * broken chunked framing ends everything on c: the reader gets a 400 and the
 * reply closes.
 */
static void body_pump(struct rill_conn *c)
{
    struct streamed *sb = c->sb;
    struct evbuffer *input = bufferevent_get_input(c->bev);
    int news = 0, from_input = 0;
    while (!sb->done && !sb->bad && evbuffer_get_length(sb->data) < BODY_WINDOW) {
        int raw = evbuffer_get_length(sb->raw) > 0;
        struct evbuffer *src = raw ? sb->raw : sb->dispatched ? input : NULL;
        struct evbuffer_iovec v;
        if (!src || evbuffer_peek(src, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t used = body_decode(sb, v.iov_base, v.iov_len);
        c->moving = 1;
        evbuffer_drain(src, used);
        c->moving = 0;
        from_input |= !raw;
        news = 1;
    }
    if (news && c->req)
        rill_body_news(c->req);
    if (sb->bad) {
        set_gate(c, GATE_DISCARD);
        evbuffer_drain(sb->raw, evbuffer_get_length(sb->raw));
        if (sb->dispatched) /* else the input holds the head evhttp has yet to read */
            take_tail(c, input, evbuffer_get_length(input), NULL);
    } else if (sb->done) {
        body_ended(c);
    }
    /* what the input's high mark left inside OpenSSL, or bytes held there while reading was off */
    if (c->tls && c->sb &&
        (from_input || (sb->dispatched && !sb->done && !sb->bad && !evbuffer_get_length(input))))
        rill_tls_kick(c->bev);
}

/* Bytes of a streamed body arrived (the last n of the input). */
static void stream_input(struct rill_conn *c, struct evbuffer *input, size_t n)
{
    struct streamed *sb = c->sb;
    if (sb->dispatched) {
        body_pump(c);
        return;
    }
    take_tail(c, input, n, sb->raw); /* evhttp has yet to read the head in front */
    if (c->gate == GATE_DISCARD)
        return; /* out of memory */
    body_pump(c);
    /* the handler's wait (response.c) or its reply turns reading on again; a TLS one is read
       until then: bytes held in OpenSSL would wait for nothing once reading is on again */
    if (c->sb && !c->tls && evbuffer_get_length(sb->raw) > BODY_RAW_MAX)
        bufferevent_disable(c->bev, EV_READ);
}

/*
 * A streamed head behind a reply in flight: it and what follows stay in the
 * input, unread by evhttp until that reply is done (rill_conn_replied), and
 * are scanned again then.
 */
static void wait_behind(struct rill_conn *c, struct evbuffer *buf)
{
    if (buf == c->held) {
        give_to_evhttp(c, NULL, 0);
        held_clear(c);
    }
    scanner_drop(c);
    set_gate(c, GATE_WAIT);
}

static struct streamed *stream_new(const struct rill_head_frame *f)
{
    struct streamed *sb = calloc(1, sizeof *sb);
    if (!sb)
        return NULL;
    sb->raw = evbuffer_new();
    sb->data = evbuffer_new();
    sb->length = f->chunked ? -1 : (long long)f->length;
    sb->left = f->length;
    sb->expect = f->expect_continue != 0;
    if (f->chunked && (sb->chunks = malloc(sizeof *sb->chunks)) != NULL) {
        rill_chunkscan_init(sb->chunks, RILL_REQUEST_LINE_MAX); /* its trailers */
        sb->chunks->on_data = on_chunk_data;
        sb->chunks->data_arg = sb;
    }
    if (!sb->raw || !sb->data || (f->chunked && !sb->chunks)) {
        streamed_free(sb);
        return NULL;
    }
    return sb;
}

/* The head's framing, when its body is to be streamed (copied out of buf: [start, end)). */
static int streamed_head(struct evbuffer *buf, size_t start, size_t len, char *head,
                         struct rill_head_frame *f)
{
    struct evbuffer_ptr ptr;
    if (evbuffer_ptr_set(buf, &ptr, start, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &ptr, head, len) != (ev_ssize_t)len)
        return 0;
    rill_head_frame_read(head, len, f);
    return rill_head_frame_streamable(f) && rill_body_streams(f->target, f->target_len);
}

/*
 * The whole head in buf [start, end): 1 when its body is streamed. evhttp
 * then gets the head without its framing fields, and the bytes after it are
 * the gate's. 0: evhttp reads it as any other (out of memory too: the body
 * is then bounded by --max-body-bytes, as before).
 */
static int stream_head(struct rill_conn *c, struct evbuffer *buf, size_t start, size_t end)
{
    size_t len = end - start;
    char first;
    struct evbuffer_ptr ptr;
    if (!rill_body_any_streams() || evbuffer_ptr_set(buf, &ptr, start, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &ptr, &first, 1) != 1 || first != 'P')
        return 0;                 /* POST, PUT and PATCH only */
    char *head = malloc(2 * len); /* the head, then the head evhttp reads */
    struct rill_head_frame f;
    if (!head || !streamed_head(buf, start, len, head, &f)) {
        free(head);
        return 0;
    }
    if (c->req || c->sb || c->busy) { /* a request dispatched, its reply not done */
        free(head);
        wait_behind(c, buf);
        return 1;
    }
    struct streamed *sb = stream_new(&f);
    if (!sb) {
        free(head);
        return 0;
    }
    size_t stripped = rill_head_frame_strip(head, len, head + len);
    if (buf == c->held) {
        evbuffer_add_buffer(sb->raw, buf);
        held_clear(c);
    } else {
        take_tail(c, buf, evbuffer_get_length(buf) - start, sb->raw);
    }
    evbuffer_drain(sb->raw, len); /* the head as it came */
    c->sb = sb;
    scanner_drop(c);
    if (c->gate == GATE_DISCARD) { /* out of memory in take_tail */
        free(head);
        return 1;
    }
    give_to_evhttp(c, head + len, stripped);
    free(head);
    set_gate(c, GATE_STREAM);
    body_pump(c);
    return 1;
}

/* A streamed request dispatched: its framing fields are back, for the checks and req.headers. */
static void stream_dispatched(struct rill_conn *c, struct evhttp_request *req)
{
    struct streamed *sb = c->sb;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    char length[24];
    sb->dispatched = 1;
    if (sb->length >= 0) {
        snprintf(length, sizeof length, "%lld", sb->length);
        evhttp_add_header(in, "Content-Length", length);
    } else {
        evhttp_add_header(in, "Transfer-Encoding", "chunked");
    }
}

/*
 * The head is whole and clean (buf [start, end)): evhttp may read it (held
 * bytes go back in front of it), and the gate follows a chunked body, of
 * which the last `after` bytes of the input are the start. A streamed body
 * is the gate's instead.
 */
static void head_done(struct rill_conn *c, const union scanner *sc, struct evbuffer *buf,
                      size_t start, size_t end, size_t after)
{
    if (stream_head(c, buf, start, end))
        return;
    int chunked = sc->head.chunked;
    if (c->held)
        give_to_evhttp(c, NULL, 0);
    held_clear(c);
    set_gate(c, GATE_PASS);
    if (!chunked) {
        scanner_drop(c);
        return;
    }
    set_gate(c, GATE_BODY); /* c->sc exists (head_arrived made it, or the held head had it) */
    rill_chunkscan_init(&c->sc->body, c->set->max_header_bytes);
    if (after)
        scan_body(c, after);
}

/* Scans the held bytes not seen yet: the head is released when whole, refused when bad. */
static void scan_held(struct rill_conn *c)
{
    enum rill_scan_result res = feed_from(c->held, &c->scanned, feed_head, &c->sc->head);
    if (res == RILL_SCAN_DONE)
        head_done(c, c->sc, c->held, 0, c->scanned, evbuffer_get_length(c->held) - c->scanned);
    else if (res == RILL_SCAN_BAD)
        refuse(c, c->sc, is_head(c->held, 0));
}

/*
 * The last n bytes of the input start a head: scanned where they are, as a
 * whole head usually comes in one read. Only a head still incomplete is moved
 * aside, so that evhttp does not read its first lines.
 */
static void head_arrived(struct rill_conn *c, struct evbuffer *input, size_t n)
{
    size_t len = evbuffer_get_length(input), at = len - n;
    if (c->hs_timed) { /* the first bytes after the handshake: the request's own clock starts */
        c->hs_timed = 0;
        deadline_stop(c);
    }
    deadline_start(c);
    rill_headscan_init(&scratch.head, c->set->max_header_bytes);
    enum rill_scan_result res = feed_from(input, &at, feed_head, &scratch.head);
    if (res == RILL_SCAN_DONE && scratch.head.chunked && !(c->sc = malloc(sizeof *c->sc))) {
        take_tail(c, input, n, NULL); /* out of memory: the body cannot be checked, so it goes */
        set_gate(c, GATE_DISCARD);    /* and the deadline reaps c */
    } else if (res == RILL_SCAN_DONE) {
        head_done(c, &scratch, input, len - n, at, len - at);
    } else if (res == RILL_SCAN_BAD) {
        int head = is_head(input, len - n);
        take_tail(c, input, n, NULL);
        refuse(c, &scratch, head);
    } else if ((c->held = evbuffer_new()) != NULL && (c->sc = malloc(sizeof *c->sc)) != NULL) {
        *c->sc = scratch; /* the head goes on in the next read: c keeps its own */
        take_tail(c, input, n, c->held);
        c->scanned = n;
        head_clock_start(c);
    } else { /* out of memory: nothing on c can be trusted now */
        held_clear(c);
        take_tail(c, input, n, NULL);
        set_gate(c, GATE_DISCARD);
    }
}

/* Bytes from the client (or from evhttp draining what it read: ignored). */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct rill_conn *c = arg;
    if (info->n_added == 0 || c->moving)
        return;
    if (c->idle.queued &&
        (c->gate == GATE_STREAM || !evbuffer_get_length(bufferevent_get_output(c->bev))))
        idle_touch(c); /* sending while not reading what it was sent is not activity, but a body
                          the handler reads is (bounded by its window) */
    if (c->gate == GATE_DISCARD) {
        take_tail(c, buf, info->n_added, NULL);
    } else if (c->gate == GATE_HEAD && !c->held) {
        head_arrived(c, buf, info->n_added);
    } else if (c->gate == GATE_HEAD) {
        take_tail(c, buf, info->n_added, c->held);
        scan_held(c);
    } else if (c->gate == GATE_BODY) {
        scan_body(c, info->n_added);
    } else if (c->gate == GATE_STREAM) {
        stream_input(c, buf, info->n_added);
    } else if (c->gate == GATE_WAIT && evbuffer_get_length(buf) > BODY_RAW_MAX) {
        /* evhttp reads again after the reply in flight; a TLS one is held by a mark instead,
           which rill_conn_replied lifts (reading turned off would leave OpenSSL's bytes unread) */
        if (c->tls)
            bufferevent_setwatermark(c->bev, EV_READ, 0, BODY_RAW_MAX);
        else
            bufferevent_disable(c->bev, EV_READ);
    }
}

/* ---- the listener ------------------------------------------------------------------------ */

/*
 * At EMFILE (or ENFILE, ENOBUFS) accept fails while the connection waits in
 * the kernel's queue, so the listener is readable again at once: libevent
 * retries in a loop and logs every failure (half a million lines in three
 * seconds, nobody served). Instead the listener pauses, and resumes when a
 * connection closes (its descriptor is then free), or after RESUME_SECONDS
 * when the descriptors went elsewhere; the log gets one line a minute at
 * most. Connections wait in the backlog meanwhile.
 */

/* The listener's callbacks get evhttp's argument, not ours: one server per process. */
static struct rill_conns *listening;

static void accept_resume(struct rill_conns *cs)
{
    if (!cs->paused || !cs->nlisteners)
        return;
    cs->paused = 0;
    event_del(cs->resume_ev);
    for (int i = 0; i < cs->nlisteners; i++)
        evconnlistener_enable(cs->listeners[i]);
}

static int is_ours(const struct rill_conns *cs, const struct evconnlistener *lev)
{
    for (int i = 0; i < cs->nlisteners; i++)
        if (cs->listeners[i] == lev)
            return 1;
    return 0;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    accept_resume(arg);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct rill_conns *cs = listening;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval now;
    (void)arg;
    if (!cs || !is_ours(cs, lev))
        return;
    for (int i = 0; i < cs->nlisteners; i++) /* every accept would fail the same way */
        evconnlistener_disable(cs->listeners[i]);
    cs->paused = 1;
    rill_timer_add(cs->resume_ev, RESUME_SECONDS);
    rill_tq_now(&now);
    if (evutil_timerisset(&cs->logged_at) && now.tv_sec - cs->logged_at.tv_sec < ACCEPT_LOG_EVERY) {
        cs->unlogged++;
        return;
    }
    if (cs->unlogged)
        rill_log_at(RILL_LOG_WARN,
                    "cannot accept connections: %s: paused until one closes (and %ld times since "
                    "the last line)",
                    strerror(err), cs->unlogged);
    else
        rill_log_at(RILL_LOG_WARN, "cannot accept connections: %s: paused until one closes",
                    strerror(err));
    cs->logged_at = now;
    cs->unlogged = 0;
}

void rill_conns_listen(struct rill_conns *cs, struct evconnlistener **levs, int n)
{
    if (!cs)
        return;
    cs->nlisteners = n < RILL_MAX_LISTENS ? n : RILL_MAX_LISTENS;
    for (int i = 0; i < cs->nlisteners; i++) {
        cs->listeners[i] = levs[i];
        evconnlistener_set_error_cb(levs[i], on_accept_error);
    }
    cs->paused = 0;
    event_del(cs->resume_ev);
    listening = cs->nlisteners ? cs : NULL;
}

/* ---- accept, set up, close ------------------------------------------------------------ */

static int index_put(struct rill_conns *cs, int fd, struct rill_conn *c)
{
    if (fd >= cs->nfds) {
        int n = fd < 64 ? 128 : fd * 2;
        struct rill_conn **grown = realloc(cs->by_fd, (size_t)n * sizeof *grown);
        if (!grown)
            return -1;
        memset(grown + cs->nfds, 0, (size_t)(n - cs->nfds) * sizeof *grown);
        cs->by_fd = grown;
        cs->nfds = n;
    }
    cs->by_fd[fd] = c;
    return 0;
}

static void conn_free(struct rill_conn *c)
{
    if (c->input_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
    if (c->output_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->output_cb);
    if (c->head_ev)
        event_free(c->head_ev);
    free(c->sc);
    if (c->held)
        evbuffer_free(c->held);
    stream_free(c);
    free(c);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct rill_conn *c = arg;
    struct rill_conns *cs = c->set;
    (void)evcon;
    if (c->tls && !c->cut && !c->req && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        rill_tls_close_notify(c->bev); /* a clean end: a close-delimited body was whole */
    if (c->req)
        rill_server_client_gone(c->req);
    deadline_stop(c);
    rill_tq_remove(&cs->idle, c);
    rill_tq_remove(&cs->linger, c);
    cs->by_fd[c->fd] = NULL;
    cs->count -= c->admitted;
    conn_free(c);
    accept_resume(cs); /* its descriptor is closed right after this returns */
    if (cs->closed_fn)
        cs->closed_fn(cs->closed_arg);
}

/*
 * One too many: a 503 at once, then the connection lingers, dropping input,
 * until the client closes, and a second at most. Closing at once would reset
 * a connection whose request is still arriving, and the client could lose
 * the 503; lingering longer would let a flood of shed connections hold the
 * descriptors --max-connections is there to keep.
 */
static void shed(struct rill_conn *c)
{
    /* sent before the request is read, so it may answer a HEAD: no body, the reason in its line */
    send_raw(c, "HTTP/1.1 503 Service Unavailable (too many connections)\r\n"
                "Content-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n");
    if (!c->tls) /* a TLS one's 503 waits for its handshake, in the bufferevent */
        shutdown(c->fd, SHUT_WR);
    linger(c);
}

/* From now on c drops what it reads, and closes when its client does, or a second later. */
static void linger(struct rill_conn *c)
{
    set_gate(c, GATE_DISCARD);
    held_clear(c);
    scanner_drop(c);
    deadline_stop(c);
    head_clock_stop(c);
    rill_tq_remove(&c->set->idle, c);
    if (!c->linger.queued)
        rill_tq_append(&c->set->linger, c);
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct rill_conns *cs = arg;
    struct rill_conn *c;
    struct timeval now;
    (void)fd, (void)what;
    rill_tq_now(&now);
    while ((c = rill_tq_due(&cs->linger, &now)) != NULL) {
        rill_tq_remove(&cs->linger, c);
        evhttp_connection_free(c->evcon); /* our close callback frees c */
    }
    rill_tq_arm(&cs->linger);
}

static void set_up(struct rill_conn *c)
{
    struct rill_conns *cs = c->set;
    void *evcon = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
    c->fd = (int)bufferevent_getfd(c->bev);
    if (!evcon || c->fd < 0 || c->doomed || index_put(cs, c->fd, c) != 0) {
        struct bufferevent *bev = c->bev;
        if (evcon) /* out of memory */
            evhttp_connection_free(evcon);
        conn_free(c); /* while bev is still ours: it unhooks from bev's input */
        bufferevent_decref(bev);
        return;
    }
    bufferevent_decref(c->bev);
    c->evcon = evcon;
    evhttp_connection_set_closecb(evcon, on_close, c);
    idle_touch(c);
    if (c->tls) { /* a handshake has --request-timeout: a stalled one is cut off */
        deadline_start(c);
        c->hs_timed = c->deadline.queued;
    }
    if (cs->max > 0 && cs->count >= cs->max) {
        shed(c);
        return;
    }
    c->admitted = 1;
    cs->count++;
}

static void on_setup(evutil_socket_t fd, short what, void *arg)
{
    struct rill_conns *cs = arg;
    (void)fd, (void)what;
    while (cs->fresh) {
        struct rill_conn *c = cs->fresh;
        cs->fresh = c->fresh_next;
        set_up(c);
    }
}

/*
 * A new connection's gate, on bev. A doomed one is closed as soon as it is
 * set up: an https connection whose TLS could not be had (out of memory)
 * must not be read as plain HTTP.
 */
static struct bufferevent *gate_new(struct rill_conns *cs, struct bufferevent *bev, int tls,
                                    int doomed)
{
    struct rill_conn *c = bev ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return bev; /* ungated: on_request answers 503 */
    c->set = cs;
    c->bev = bev;
    c->tls = tls != 0;
    c->doomed = doomed != 0;
    c->fd = -1;
    c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    c->output_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
    bufferevent_incref(bev); /* until set_up: evhttp may drop it before (out of memory) */
    c->fresh_next = cs->fresh;
    cs->fresh = c;
    event_active(cs->setup_ev, EV_TIMEOUT, 0);
    return bev;
}

/* evhttp's bevcb, right after accept (the fd is set later, by evhttp). */
static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
    return gate_new(arg, bufferevent_socket_new(base, -1, 0), 0, 0);
}

/* The same for an https listener: the handshake starts when evhttp sets the fd. */
static struct bufferevent *on_accept_tls(struct event_base *base, void *arg)
{
    struct rill_conns *cs = arg;
    struct bufferevent *bev = rill_tls_bufferevent(cs->tls, base);
    if (bev)
        return gate_new(cs, bev, 1, 0);
    return gate_new(cs, bufferevent_socket_new(base, -1, 0), 0, 1);
}

/* ---- what server.c asks ---------------------------------------------------------------- */

struct rill_conn *rill_conn_of(struct rill_conns *cs, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return NULL;
    int fd = (int)bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    struct rill_conn *c = fd >= 0 && fd < cs->nfds ? cs->by_fd[fd] : NULL;
    return c && c->evcon == evcon ? c : NULL;
}

int rill_conn_tls(const struct rill_conn *c)
{
    return c->tls;
}

void rill_conn_cut(struct rill_conn *c)
{
    c->cut = 1;
}

int rill_conn_dispatched(struct rill_conn *c, struct evhttp_request *req, const char **why)
{
    if (c->refused) {
        *why = c->why;
        return c->refused;
    }
    deadline_stop(c);
    c->busy = 1; /* until rill_conn_replied: a streamed head behind this request waits */
    if (c->sb && !c->sb->dispatched) {
        stream_dispatched(c, req);
        if (c->sb->bad)
            return 0; /* discarding: the reader gets its 400, the reply closes */
        if (!c->sb->done) {
            body_pump(c); /* the body comes as the handler reads it; the idle timer watches */
            return 0;
        }
    }
    if (c->body_timed) { /* the body is read: the queue watches c again */
        c->body_timed = 0;
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        idle_touch(c);
    }
    set_gate(c, GATE_HEAD); /* what follows this request is the next head */
    struct evbuffer *input = bufferevent_get_input(c->bev);
    size_t buffered = evbuffer_get_length(input);
    if (buffered)
        head_arrived(c, input, buffered);
    return 0;
}

void rill_conn_attach(struct rill_conn *c, struct rill_request *r)
{
    c->req = r;
    if (r) {
        deadline_stop(c); /* a pipelined request's clock waits for this reply */
        head_clock_stop(c);
    } else if (c->held || c->gate == GATE_PASS || c->gate == GATE_BODY) {
        deadline_start(c); /* the next request had begun arriving */
        head_clock_start(c);
    }
    if (!r)
        idle_touch(c); /* a reply is done: idle from now */
}

void rill_conn_replied(struct rill_conn *c, struct evhttp_request *req)
{
    int unfinished = rill_conn_body_unfinished(c);
    struct rill_request *r = c->req;
    if (unfinished)
        rill_conn_body_abandon(c); /* nothing left in the input can be taken as a request */
    stream_free(c);
    c->busy = 0;
    rill_conn_attach(c, NULL);
    rill_body_news(r); /* a reader still waiting finds the request over */
    if (unfinished) {
        /*
         * Its reply said Connection: close (response.c). evhttp would close at
         * once, and a client still sending its body would get a reset that can
         * lose the reply: c lingers instead, dropping what comes, and closes
         * when the client does, a second later at most.
         */
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        while (evhttp_remove_header(out, "Connection") == 0)
            ;
        while (evhttp_remove_header(in, "Connection") == 0)
            ;
        if (!c->tls)
            shutdown(c->fd, SHUT_WR);
        linger(c);
        return;
    }
    if (c->gate == GATE_WAIT) { /* a streamed head waited for this reply */
        struct evbuffer *input = bufferevent_get_input(c->bev);
        if (c->tls)
            bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        set_gate(c, GATE_HEAD);
        if (evbuffer_get_length(input))
            head_arrived(c, input, evbuffer_get_length(input));
        if (c->tls)
            rill_tls_kick(c->bev); /* what OpenSSL held while reading was off */
    }
}

void rill_conn_body_abandon(struct rill_conn *c)
{
    struct streamed *sb = c->sb;
    if (!sb || (sb->done && !sb->bad) || sb->abandoned)
        return;
    sb->abandoned = 1; /* always after dispatch: its callers answer the request */
    set_gate(c, GATE_DISCARD);
    evbuffer_drain(sb->raw, evbuffer_get_length(sb->raw));
    evbuffer_drain(sb->data, evbuffer_get_length(sb->data));
    if (sb->dispatched) { /* else the input holds the head evhttp has yet to read */
        struct evbuffer *input = bufferevent_get_input(c->bev);
        take_tail(c, input, evbuffer_get_length(input), NULL);
    }
}

int rill_conn_body_streamed(const struct rill_conn *c, long long *length)
{
    if (!c->sb || !c->sb->dispatched)
        return 0;
    *length = c->sb->length;
    return 1;
}

enum rill_body_status rill_conn_body_status(const struct rill_conn *c, size_t *avail,
                                            const char **why)
{
    const struct streamed *sb = c->sb;
    *avail = evbuffer_get_length(sb->data);
    if (*avail)
        return RILL_BODY_DATA; /* what came before a framing error is the client's too */
    if (sb->bad) {
        *why = sb->why;
        return RILL_BODY_BAD;
    }
    return sb->done ? RILL_BODY_END : RILL_BODY_WAIT;
}

void rill_conn_body_remove(struct rill_conn *c, char *out, size_t n)
{
    evbuffer_remove(c->sb->data, out, n);
    c->sb->waited = 0;
    if (c->gate == GATE_STREAM)
        body_pump(c); /* the window has room again */
}

void rill_conn_body_want(struct rill_conn *c, int replied)
{
    struct streamed *sb = c->sb;
    sb->waited = 1;
    if (!sb->expect || sb->continued || replied || c->gate != GATE_STREAM)
        return;
    sb->continued = 1; /* asked once: a client that sends anyway needs none */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)))
        return;
    if (c->tls) /* send_raw turns evhttp's write callback off: the reply needs it back */
        bufferevent_getcb(c->bev, NULL, &c->continue_writecb, NULL, NULL);
    send_raw(c, "HTTP/1.1 100 Continue\r\n\r\n");
}

void rill_conn_reply_begins(struct rill_conn *c)
{
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;
    void *arg;
    if (!c || !c->continue_writecb)
        return;
    /* it fires once the output is empty: the 100 and this reply both gone, as evhttp expects */
    bufferevent_getcb(c->bev, &readcb, NULL, &eventcb, &arg);
    bufferevent_setcb(c->bev, readcb, c->continue_writecb, eventcb, arg);
    c->continue_writecb = NULL;
}

int rill_conn_body_unfinished(const struct rill_conn *c)
{
    return c && c->sb && (!c->sb->done || c->sb->bad);
}

/*
 * A drain (reload): connections waiting for their next request close now.
 * One whose next request has begun to arrive is served, with a
 * Connection: close (replyhead.c), like those whose reply is on its way.
 */
void rill_conns_close_idle(struct rill_conns *cs)
{
    for (int fd = 0; fd < cs->nfds; fd++) {
        struct rill_conn *c = cs->by_fd[fd];
        if (!c || !c->evcon || c->req || c->gate != GATE_HEAD ||
            (c->held && evbuffer_get_length(c->held) > 0) ||
            evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
            evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            continue;
        rill_tq_remove(&cs->idle, c);
        evhttp_connection_free(c->evcon); /* our close callback frees c */
    }
}

/* ---- a stream taken off evhttp (lean.h) ------------------------------------------------- */

/*
 * The first fields of libevent 2.1.12's struct evhttp_connection
 * (http-internal.h), which has no call to give its socket away: freeing it
 * would shut the socket down. They are checked against what the public
 * calls say before the one write (fd = -1), and a libevent that does not
 * match is never touched: its streams stay on evhttp.
 */
struct evcon_head {
    void *tqe_next, **tqe_prev; /* TAILQ_ENTRY(evhttp_connection) next */
    evutil_socket_t fd;
    struct bufferevent *bufev;
};

static struct evcon_head *evcon_head(struct evhttp_connection *evcon, struct bufferevent *bev)
{
    struct evcon_head *h = (struct evcon_head *)evcon;
    if (event_get_version_number() != 0x02010c00 || h->bufev != bev ||
        h->fd != bufferevent_getfd(bev) || h->fd < 0)
        return NULL;
    return h;
}

int rill_conn_may_detach(const struct rill_conn *c)
{
    return c->evcon && evcon_head(c->evcon, c->bev) && !c->tls && c->gate == GATE_HEAD &&
           !c->held && !c->sb && !c->doomed && !c->linger.queued &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
}

int rill_conn_detach(struct rill_conn *c, int *fd, struct evbuffer *pending)
{
    struct bufferevent *bev = c->bev;
    struct evhttp_connection *evcon = c->evcon;
    struct evcon_head *h = evcon ? evcon_head(evcon, bev) : NULL;
    struct evbuffer *output = bufferevent_get_output(bev);
    if (!rill_conn_may_detach(c))
        return -1;                /* a pipelined request, a refusal, a linger: evhttp keeps it */
    evbuffer_unfreeze(output, 1); /* a socket bufferevent keeps its output's start frozen */
    int moved = evbuffer_add_buffer(pending, output);
    evbuffer_freeze(output, 1);
    if (moved != 0)
        return -1;
    *fd = h->fd;
    struct rill_conns *cs = c->set;
    deadline_stop(c);
    head_clock_stop(c);
    rill_tq_remove(&cs->idle, c);
    cs->by_fd[c->fd] = NULL;
    conn_free(c); /* unhooks from the bufferevent's buffers; the count stays, the lean's now */
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    bufferevent_setfd(bev, -1);
    h->fd = -1;                    /* evhttp_connection_free neither shuts it down nor closes it */
    evhttp_connection_free(evcon); /* its request and bufferevent with it */
    return 0;
}

void rill_conns_released(struct rill_conns *cs)
{
    cs->count--;
    accept_resume(cs); /* its descriptor is closed by now */
    if (cs->closed_fn)
        cs->closed_fn(cs->closed_arg);
}

double rill_conns_idle_timeout(const struct rill_conns *cs)
{
    return (double)cs->idle.span.tv_sec + (double)cs->idle.span.tv_usec / 1e6;
}

void rill_conns_on_close(struct rill_conns *cs, void (*fn)(void *), void *arg)
{
    cs->closed_fn = fn;
    cs->closed_arg = arg;
}

int rill_conns_count(const struct rill_conns *cs)
{
    return cs->count;
}

void rill_conns_serve(struct rill_conns *cs, struct evhttp *http, struct rill_tls *tls)
{
    if (tls)
        cs->tls = tls; /* one certificate for every https listener */
    evhttp_set_bevcb(http, tls ? on_accept_tls : on_accept, cs);
}

struct rill_conns *rill_conns_new(struct event_base *base, const struct rill_conns_config *cfg)
{
    struct rill_conns *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    cs->base = base;
    cs->max_header_bytes = cfg->max_header_bytes;
    cs->max = cfg->max_connections;
    cs->setup_ev = event_new(base, -1, 0, on_setup, cs);
    rill_tq_init(&cs->deadlines, base, on_deadline, cs, cfg->request_timeout,
                 offsetof(struct rill_conn, deadline));
    rill_tq_init(&cs->idle, base, on_idle, cs, cfg->idle_timeout, offsetof(struct rill_conn, idle));
    rill_tq_init(&cs->linger, base, on_linger, cs, LINGER_SECONDS,
                 offsetof(struct rill_conn, linger));
    rill_tq_timeval(cfg->header_timeout, &cs->head_span);
    cs->min_rate = cfg->min_rate;
    cs->resume_ev = evtimer_new(base, on_resume, cs);
    return cs;
}

void rill_conns_free(struct rill_conns *cs)
{
    if (!cs)
        return;
    while (cs->fresh) { /* accepted in the last loop turn; evhttp_free dropped them */
        struct rill_conn *c = cs->fresh;
        cs->fresh = c->fresh_next;
        bufferevent_decref(c->bev);
        free(c->sc);
        free(c);
    }
    event_free(cs->setup_ev);
    rill_tq_free(&cs->deadlines);
    rill_tq_free(&cs->idle);
    rill_tq_free(&cs->linger);
    event_free(cs->resume_ev);
    if (listening == cs)
        listening = NULL;
    free(cs->by_fd);
    free(cs);
}
