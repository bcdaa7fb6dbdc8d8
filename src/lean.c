/* SPDX-License-Identifier: MIT */
/*
 * Lean streams (lean.h): a socket, one event and, while the client is
 * behind, an output buffer. Writes go straight to the socket when nothing
 * waits before them (as the gate's write_now does for evhttp streams); the
 * rest waits in the buffer, written as the socket takes it. Every callback
 * to the stream's owner comes from this event's own turn, never from inside
 * a call the owner made.
 */
#include "lean.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn.h"
#include "response.h"
#include "timedq.h"

struct rill_lean {
    struct event ev;
    struct evbuffer *out; /* what the socket has not taken yet; NULL when nothing waits */
    struct rill_tq_link idle;
    struct rill_lean *prev, *next; /* every lean stream, for shutdown */
    struct rill_conns *cs;
    const struct rill_lean_ops *ops;
    void *arg;
    size_t sent, sent_seen; /* bytes the socket took; when last seen making progress */
    size_t heard; /* bytes the client sent, dropped: past RILL_IN_HIGH it is dropped too */
    int fd;
    unsigned armed : 1, ending : 1, broken : 1;
};

static struct rill_lean *all; /* one worker per process */
static int open_count;
static struct rill_tq idle_q; /* --keepalive-timeout, as the gate's inactivity queue */
static int idle_ready;

static void on_event(evutil_socket_t fd, short what, void *arg);

struct rill_lean *rill_lean_alloc(void)
{
    return calloc(1, sizeof(struct rill_lean));
}

void rill_lean_discard(struct rill_lean *l)
{
    free(l);
}

int rill_lean_count(void)
{
    return open_count;
}

size_t rill_lean_pending(const struct rill_lean *l)
{
    return l->out ? evbuffer_get_length(l->out) : 0;
}

int rill_lean_stopped(const struct rill_lean *l)
{
    return l->broken || l->ending;
}

/* Watches for the client's close always, and for room to write while something waits. */
static void arm(struct rill_lean *l)
{
    short want = EV_READ | EV_PERSIST | (l->out ? EV_WRITE : 0);
    if (l->armed && event_get_events(&l->ev) == want)
        return;
    struct event_base *base = event_get_base(&l->ev);
    event_del(&l->ev); /* also off the active queue: safe on an event assigned, never added */
    event_assign(&l->ev, base, l->fd, want, on_event, l);
    l->armed = event_add(&l->ev, NULL) == 0;
    if (!l->armed) { /* not watched (epoll out of room): it ends in its next turn */
        l->broken = 1;
        event_active(&l->ev, EV_WRITE, 0);
    }
}

/* Takes l out of everything and closes its socket; the caller then reports and frees it. */
static void release(struct rill_lean *l)
{
    event_del(&l->ev); /* armed or not: it may sit in the active queue (broke, a failed add) */
    if (idle_ready)
        rill_tq_remove(&idle_q, l);
    if (l->out)
        evbuffer_free(l->out);
    l->out = NULL;
    close(l->fd);
    if (l->prev)
        l->prev->next = l->next;
    else
        all = l->next;
    if (l->next)
        l->next->prev = l->prev;
    open_count--;
    rill_conns_released(l->cs); /* its descriptor is free: accepting may resume */
}

static void gone(struct rill_lean *l, int timed_out)
{
    release(l);
    l->ops->gone(l->arg, timed_out);
    free(l);
}

/* Before the close: what the client sent last is read, so the close is not a reset that could
 * destroy the end in its receive queue. */
static void drain_input(struct rill_lean *l)
{
    char scrap[4096];
    for (int i = 0; i < 4 && recv(l->fd, scrap, sizeof scrap, MSG_DONTWAIT) > 0; i++)
        ;
}

static void finish(struct rill_lean *l)
{
    drain_input(l);
    release(l);
    l->ops->closed(l->arg);
    free(l);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct rill_lean *l;
    struct timeval now;
    (void)fd, (void)what, (void)arg;
    rill_tq_now(&now);
    while ((l = rill_tq_due(&idle_q, &now)) != NULL) {
        if (!l->out || l->sent != l->sent_seen) { /* idle, or the client took some: fine */
            l->sent_seen = l->sent;
            rill_tq_append(&idle_q, l);
        } else {
            gone(l, 1); /* it sent nothing to a client that read nothing */
        }
    }
    rill_tq_arm(&idle_q);
}

void rill_lean_start(struct rill_lean *l, struct event_base *base, int fd, struct evbuffer *pending,
                     struct rill_conns *cs, const struct rill_lean_ops *ops, void *arg)
{
    l->fd = fd;
    l->cs = cs;
    l->ops = ops;
    l->arg = arg;
    if (pending && evbuffer_get_length(pending))
        l->out = pending;
    else if (pending)
        evbuffer_free(pending);
    l->next = all;
    if (all)
        all->prev = l;
    all = l;
    open_count++;
    double idle = rill_conns_idle_timeout(cs);
    if (!idle_ready && idle > 0) {
        rill_tq_init(&idle_q, base, on_idle, NULL, idle, offsetof(struct rill_lean, idle));
        idle_ready = idle_q.ev != NULL;
    }
    if (idle_ready)
        rill_tq_append(&idle_q, l);
    event_assign(&l->ev, base, fd, EV_READ | EV_PERSIST, on_event, l);
    l->armed = 0;
    arm(l);
}

/* head, buf and tail to the socket, as much as it takes now: the count, or -1 on an error. */
static ssize_t write_direct(int fd, const char *head, size_t hn, struct evbuffer *buf,
                            const char *tail, size_t tn)
{
    struct evbuffer_iovec v[16];
    struct iovec iov[18];
    size_t n = 0, peeked = 0;
    int chains = buf ? evbuffer_peek(buf, -1, NULL, v, 16) : 0;
    for (int i = 0; i < chains && i < 16; i++)
        peeked += v[i].iov_len;
    if (chains < 0 || chains > 16 || (buf && peeked != evbuffer_get_length(buf)))
        return 0; /* in too many pieces: all of it waits, and the event writes it */
    if (hn)
        iov[n++] = (struct iovec){(void *)head, hn};
    for (int i = 0; i < chains; i++)
        iov[n++] = (struct iovec){v[i].iov_base, v[i].iov_len};
    if (tn)
        iov[n++] = (struct iovec){(void *)tail, tn};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    return sent;
}

/* A write failed (the client is gone, most likely): the event's next turn says so. */
static void broke(struct rill_lean *l)
{
    l->broken = 1;
    event_active(&l->ev, EV_WRITE, 0);
}

/*
 * The rest of head, buf and tail after skip bytes of them went, into l->out;
 * -1 when it could not all go in (out of memory: the framing would be broken).
 */
static int keep_rest(struct rill_lean *l, size_t skip, const char *head, size_t hn,
                     struct evbuffer *buf, const char *tail, size_t tn)
{
    size_t blen = buf ? evbuffer_get_length(buf) : 0;
    int failed = 0;
    if (skip < hn) {
        failed |= evbuffer_add(l->out, head + skip, hn - skip);
        skip = 0;
    } else {
        skip -= hn;
    }
    if (skip < blen) {
        evbuffer_drain(buf, skip);
        failed |= evbuffer_add_buffer(l->out, buf);
        skip = 0;
    } else {
        skip -= blen;
    }
    if (buf)
        evbuffer_drain(buf, evbuffer_get_length(buf));
    if (skip < tn)
        failed |= evbuffer_add(l->out, tail + skip, tn - skip);
    return failed ? -1 : 0;
}

void rill_lean_send(struct rill_lean *l, const char *head, size_t hn, struct evbuffer *buf,
                    const char *tail, size_t tn)
{
    size_t blen = buf ? evbuffer_get_length(buf) : 0, sent = 0;
    if (l->ending || l->broken) {
        if (buf)
            evbuffer_drain(buf, blen);
        return;
    }
    if (!l->out) {
        ssize_t w = write_direct(l->fd, head, hn, buf, tail, tn);
        if (w < 0) {
            if (buf)
                evbuffer_drain(buf, blen);
            broke(l);
            return;
        }
        sent = (size_t)w;
        l->sent += sent;
        if (sent == hn + blen + tn) {
            if (buf)
                evbuffer_drain(buf, blen);
            return;
        }
        if (!(l->out = evbuffer_new())) { /* out of memory: the stream cannot go on whole */
            if (buf)
                evbuffer_drain(buf, blen);
            broke(l);
            return;
        }
    }
    if (keep_rest(l, sent, head, hn, buf, tail, tn) != 0) {
        broke(l);
        return;
    }
    arm(l);
}

/* What waits, to the socket while it takes it; -1 on an error. */
static int flush(struct rill_lean *l)
{
    while (l->out && evbuffer_get_length(l->out)) {
        struct evbuffer_iovec v[16];
        struct iovec iov[16];
        int n = evbuffer_peek(l->out, -1, NULL, v, 16);
        size_t total = 0;
        n = n > 16 ? 16 : n;
        for (int i = 0; i < n; i++) {
            iov[i] = (struct iovec){v[i].iov_base, v[i].iov_len};
            total += v[i].iov_len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(l->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        evbuffer_drain(l->out, (size_t)w);
        l->sent += (size_t)w;
        if ((size_t)w < total)
            return 0; /* the socket is full */
    }
    return 0;
}

/*
 * 1 while the client is there. What it sends is dropped: its stream's head
 * said close, so nothing it sends can be a request. Past RILL_IN_HIGH of it
 * (as much as a stream on evhttp would hold unread), it is dropped too: a
 * client sending at line rate must not keep the worker reading.
 */
static int client_there(struct rill_lean *l)
{
    char scrap[4096];
    ssize_t n = recv(l->fd, scrap, sizeof scrap, MSG_DONTWAIT);
    if (n > 0) {
        l->heard += (size_t)n;
        return l->heard <= RILL_IN_HIGH;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct rill_lean *l = arg;
    (void)fd;
    if (((what & EV_READ) && !client_there(l)) || l->broken) {
        gone(l, 0);
        return;
    }
    size_t before = rill_lean_pending(l);
    if (flush(l) != 0) {
        gone(l, 0);
        return;
    }
    size_t left = rill_lean_pending(l);
    if (l->out && left == 0) { /* an idle stream keeps no buffer */
        evbuffer_free(l->out);
        l->out = NULL;
    }
    if (!l->out && l->ending) {
        finish(l);
        return;
    }
    arm(l);
    if (before > RILL_OUT_LOW && left <= RILL_OUT_LOW)
        l->ops->drained(l->arg); /* last: it may send, or end the stream */
}

void rill_lean_end(struct rill_lean *l, int clean)
{
    if (l->ending)
        return;
    if (clean)
        rill_lean_send(l, "0\r\n\r\n", 5, NULL, NULL, 0);
    l->ending = 1;
    event_active(&l->ev, EV_WRITE, 0); /* its turn closes it once everything went */
}

void rill_lean_close_all(void)
{
    while (all)
        gone(all, 0);
    if (idle_ready)
        rill_tq_free(&idle_q);
    idle_ready = 0;
}
