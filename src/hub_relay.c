/* SPDX-License-Identifier: MIT */
/*
 * The worker's end of the master relay: the hub's backplane when a master
 * runs several workers. A publish goes to the master as a PUB frame and the
 * publisher waits (an effect) for its echo, the EV frame every worker gets:
 * only then is it delivered here, so that this worker's subscribers see the
 * same order as everyone else's. Answers to this worker's publishes come
 * back in the order they were sent (one ordered channel, one master), so
 * the waiting publishers are a FIFO.
 *
 * This file never frees a request or runs a handler: it delivers to the hub
 * (which wakes subscribers from their own events) and answers waiters.
 */
#include "hub_relay.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <lauxlib.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backplane.h"
#include "effects.h"
#include "frame.h"
#include "log.h"

/* The largest event the relay takes: its EV frame holds its data twice (wire, fields). */
#define MAX_EVENT (RILL_FRAME_MAX / 2 - 65536)

struct waiting {
    uint64_t token;
    rill_backplane_done done;
    void *arg; /* NULL once forgotten */
};

static struct relay {
    struct rill_backplane bp; /* first member */
    struct rill_worker *w;
    struct bufferevent *bev;
    struct rill_relay_control ctl;
    struct waiting *q; /* ring: len entries from head */
    size_t head, len, cap;
    uint64_t next_token;
    uint64_t pid;
} relay;

/* ---- sending ------------------------------------------------------------------------ */

/* Queues f to the master; -1 if the channel is gone or the frame could not be made. */
static int send_frame(struct rill_frame_out *f)
{
    int rc = -1;
    if (rill_frame_end(f) == 0 && relay.bev)
        rc = bufferevent_write(relay.bev, f->p, f->len);
    rill_frame_release(f);
    return rc;
}

static int enqueue(uint64_t token, rill_backplane_done done, void *arg)
{
    if (relay.len == relay.cap) {
        size_t cap = relay.cap ? relay.cap * 2 : 64;
        struct waiting *q = malloc(cap * sizeof *q);
        if (!q)
            return -1;
        for (size_t i = 0; i < relay.len; i++)
            q[i] = relay.q[(relay.head + i) % relay.cap];
        free(relay.q);
        relay.q = q;
        relay.cap = cap;
        relay.head = 0;
    }
    relay.q[(relay.head + relay.len) % relay.cap] = (struct waiting){token, done, arg};
    relay.len++;
    return 0;
}

static enum rill_bp_status relay_publish(struct rill_backplane *bp, const struct rill_publish *p,
                                         rill_backplane_done done, void *arg)
{
    struct rill_frame_out f = {0};
    uint64_t token = ++relay.next_token;
    (void)bp;
    if (!relay.bev)
        return RILL_BP_GONE;
    size_t size = p->prefix_len + p->suffix_len + p->fields_len + p->id_len + strlen(p->topic);
    if (size > MAX_EVENT) { /* its EV frame carries it twice: it must fit RILL_FRAME_MAX */
        struct rill_backplane_reply big = {NULL, NULL, NULL};
        char msg[128];
        snprintf(msg, sizeof msg,
                 "hub: an event of %zu bytes is too large for the workers' relay (at most %u)",
                 size, MAX_EVENT);
        big.err = msg;
        done(arg, &big);
        return RILL_BP_DONE;
    }
    rill_frame_begin(&f, RILL_F_PUB);
    rill_frame_u64(&f, token);
    rill_frame_str(&f, p->topic, strlen(p->topic));
    rill_frame_opt(&f, RILL_OPT_STRING, p->id, p->id_len);
    rill_frame_str(&f, p->prefix, p->prefix_len);
    rill_frame_str(&f, p->suffix, p->suffix_len);
    rill_frame_str(&f, p->fields, p->fields_len);
    rill_frame_opt(&f, RILL_OPT_STRING, p->trace, p->trace ? strlen(p->trace) : 0);
    if (enqueue(token, done, arg) != 0) {
        rill_frame_release(&f);
        return RILL_BP_GONE;
    }
    if (send_frame(&f) != 0) {
        relay.len--; /* the entry just queued */
        return RILL_BP_GONE;
    }
    return RILL_BP_PENDING;
}

static enum rill_bp_status relay_close(struct rill_backplane *bp, lua_State *L, const char *topic,
                                       rill_backplane_done done, void *arg)
{
    struct rill_frame_out f = {0};
    uint64_t token = ++relay.next_token;
    (void)bp, (void)L;
    if (!relay.bev || enqueue(token, done, arg) != 0)
        return RILL_BP_GONE;
    rill_frame_begin(&f, RILL_F_CLOSE);
    rill_frame_u64(&f, token);
    rill_frame_str(&f, topic, strlen(topic));
    if (send_frame(&f) != 0) {
        relay.len--;
        return RILL_BP_GONE;
    }
    return RILL_BP_PENDING;
}

static void relay_disconnect(struct rill_backplane *bp, const char *topic)
{
    struct rill_frame_out f = {0};
    (void)bp;
    rill_frame_begin(&f, RILL_F_DISCONNECT);
    rill_frame_str(&f, topic, strlen(topic));
    send_frame(&f);
}

static void send_config(const struct rill_hub_bounds *b)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_CONFIG);
    rill_frame_u64(&f, b->history);
    rill_frame_u64(&f, b->history_bytes);
    rill_frame_u64(&f, (uint64_t)(b->history_age * 1e6));
    rill_frame_u64(&f, b->max_topics);
    rill_frame_u64(&f, b->total_bytes);
    send_frame(&f);
}

static void relay_configure(struct rill_backplane *bp, const struct rill_hub_bounds *b)
{
    (void)bp;
    send_config(b);
}

static void relay_forget(struct rill_backplane *bp, void *arg)
{
    (void)bp;
    for (size_t i = 0; i < relay.len; i++)
        if (relay.q[(relay.head + i) % relay.cap].arg == arg)
            relay.q[(relay.head + i) % relay.cap].arg = NULL;
}

void rill_hub_relay_send_ready(void)
{
    struct rill_frame_out f = {0};
    struct rill_hub_bounds b;
    rill_hub_bounds(&b);
    send_config(&b); /* the bounds this generation's master history keeps */
    rill_frame_begin(&f, RILL_F_READY);
    send_frame(&f);
}

void rill_hub_relay_send_draining(void)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_DRAINING);
    send_frame(&f);
}

void rill_hub_relay_send_files(const char *const *paths, int n)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_FILES);
    rill_frame_u64(&f, (uint64_t)n);
    for (int i = 0; i < n; i++)
        rill_frame_str(&f, paths[i], strlen(paths[i]));
    send_frame(&f);
}

/*
 * Writes bytes on the channel now, waiting for room (the channel is
 * non-blocking): for the last words of a worker about to exit, whose loop
 * will not run again. Bounded: a second at most.
 */
static int write_now(const void *bytes, size_t len)
{
    evutil_socket_t fd = relay.bev ? bufferevent_getfd(relay.bev) : -1;
    size_t off = 0;
    while (fd >= 0 && off < len) {
        ssize_t n = write(fd, (const char *)bytes + off, len - off);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) <= 0)
                return -1;
        } else {
            return -1;
        }
    }
    return fd >= 0 ? 0 : -1;
}

/*
 * What the loop has not written yet goes first, so that frames stay whole
 * and in order. -1 if it could not all go: a frame may be cut, and nothing
 * may follow it.
 */
static int flush_now(void)
{
    if (!relay.bev)
        return -1;
    struct evbuffer *out = bufferevent_get_output(relay.bev);
    size_t len = evbuffer_get_length(out);
    if (len == 0)
        return 0;
    const unsigned char *bytes = evbuffer_pullup(out, (ev_ssize_t)len);
    int rc = bytes ? write_now(bytes, len) : -1;
    evbuffer_unfreeze(out, 1); /* a socket bufferevent's output front takes its own writes only */
    evbuffer_drain(out, len);
    evbuffer_freeze(out, 1);
    return rc;
}

void rill_hub_relay_send_failed(const char *message)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_FAILED);
    rill_frame_str(&f, message, strlen(message));
    if (flush_now() == 0 && rill_frame_end(&f) == 0)
        write_now(f.p, f.len);
    rill_frame_release(&f);
}

/* ---- receiving ---------------------------------------------------------------------- */

/* The answer to this worker's oldest publish or close, which tok must be. */
static void answer(uint64_t tok, const struct rill_backplane_reply *reply)
{
    while (relay.len > 0) {
        struct waiting q = relay.q[relay.head];
        relay.head = (relay.head + 1) % relay.cap;
        relay.len--;
        if (q.token == tok) {
            if (q.arg)
                q.done(q.arg, reply);
            return;
        }
        if (q.arg) { /* cannot happen on an ordered channel: say so rather than hang */
            struct rill_backplane_reply lost = {NULL, "hub: the relay lost this publish", NULL};
            q.done(q.arg, &lost);
        }
    }
}

struct ev_frame {
    uint64_t origin, token;
    struct rill_hub_delivery d;
    const char *fields;
    size_t fields_len;
};

static int deliver_ev(lua_State *L)
{
    struct ev_frame *ev = lua_touserdata(L, 1);
    rill_hub_fields_push(L, ev->fields, ev->fields_len, ev->d.id, ev->d.id_len);
    if (rill_hub_deliver(L, &ev->d) != 0)
        rill_log("hub: no room for topic '%s' here (max_topics): its event is not kept",
                 ev->d.topic);
    return 0;
}

/* Runs fn(L, arg) protected: a delivery may run out of memory, which must not unwind the loop. */
static void protected(lua_CFunction fn, void *arg)
{
    lua_State *L = relay.w->L;
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        rill_log("hub: a relayed event was lost here: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static int on_ev(struct rill_frame_in *in)
{
    struct ev_frame ev = {0};
    size_t len;
    ev.origin = rill_frame_get_u64(in);
    ev.token = rill_frame_get_u64(in);
    ev.d.topic = rill_frame_get_str(in, &len);
    ev.d.epoch = rill_frame_get_str(in, &len);
    ev.d.seq = rill_frame_get_u64(in);
    ev.d.id = rill_frame_get_str(in, &ev.d.id_len);
    ev.d.wire = rill_frame_get_str(in, &ev.d.wire_len);
    ev.fields = rill_frame_get_str(in, &ev.fields_len);
    ev.d.at = (double)rill_frame_get_u64(in) / 1e6;
    size_t trace_len;
    char trace[64] = "";
    const char *t = NULL;
    if (rill_frame_get_opt(in, &t, &trace_len) != RILL_OPT_NONE && t && trace_len < sizeof trace)
        memcpy(trace, t, trace_len);
    ev.d.trace = trace[0] ? trace : NULL;
    if (rill_frame_done(in) != 0)
        return -1;
    protected(deliver_ev, &ev);
    if (ev.origin == relay.pid) {
        struct rill_backplane_reply reply = {ev.d.id, NULL, NULL};
        answer(ev.token, &reply);
    }
    return 0;
}

static int on_refused(struct rill_frame_in *in)
{
    size_t len;
    struct rill_backplane_reply reply = {0};
    uint64_t tok = rill_frame_get_u64(in);
    reply.err = rill_frame_get_str(in, &len);
    rill_frame_get_opt(in, &reply.code, &len);
    if (rill_frame_done(in) != 0)
        return -1;
    answer(tok, &reply);
    return 0;
}

struct topic_frame {
    const char *name, *epoch;
    uint64_t last_seq, closed;
    int kind; /* RILL_F_TOPIC or RILL_F_CLOSED */
};

static int deliver_topic(lua_State *L)
{
    struct topic_frame *t = lua_touserdata(L, 1);
    if (t->kind == RILL_F_TOPIC)
        rill_hub_deliver_topic(L, t->name, t->epoch, t->last_seq, (int)t->closed);
    else
        rill_hub_deliver_close(L, t->name);
    return 0;
}

static int on_topic(struct rill_frame_in *in)
{
    size_t len;
    struct topic_frame t = {0};
    t.kind = RILL_F_TOPIC;
    t.name = rill_frame_get_str(in, &len);
    t.epoch = rill_frame_get_str(in, &len);
    t.last_seq = rill_frame_get_u64(in);
    t.closed = rill_frame_get_u64(in);
    if (rill_frame_done(in) != 0)
        return -1;
    protected(deliver_topic, &t);
    return 0;
}

static int on_closed(struct rill_frame_in *in)
{
    size_t len;
    struct topic_frame t = {0};
    t.kind = RILL_F_CLOSED;
    uint64_t origin = rill_frame_get_u64(in);
    uint64_t tok = rill_frame_get_u64(in);
    t.name = rill_frame_get_str(in, &len);
    if (rill_frame_done(in) != 0)
        return -1;
    protected(deliver_topic, &t);
    if (origin == relay.pid) {
        struct rill_backplane_reply reply = {"true", NULL, NULL};
        answer(tok, &reply);
    }
    return 0;
}

static int on_control(struct rill_frame_in *in)
{
    size_t len;
    switch (in->type) {
    case RILL_F_SNAP_END:
        if (rill_frame_done(in) != 0)
            return -1;
        relay.ctl.ready(relay.ctl.arg);
        return 0;
    case RILL_F_ACCEPT:
        if (rill_frame_done(in) != 0)
            return -1;
        relay.ctl.accept(relay.ctl.arg);
        return 0;
    case RILL_F_DRAIN: {
        uint64_t ms = rill_frame_get_u64(in);
        if (rill_frame_done(in) != 0)
            return -1;
        relay.ctl.drain(relay.ctl.arg, (double)ms / 1000);
        return 0;
    }
    case RILL_F_LEAD: {
        uint64_t lead = rill_frame_get_u64(in);
        if (rill_frame_done(in) != 0 || lead > 1)
            return -1;
        rill_background_lead(lead == 1);
        return 0;
    }
    case RILL_F_DISCONNECT: {
        rill_frame_get_u64(in); /* the origin, which did it already */
        const char *topic = rill_frame_get_str(in, &len);
        if (rill_frame_done(in) != 0)
            return -1;
        rill_hub_deliver_disconnect(topic);
        return 0;
    }
    default: return -1;
    }
}

static int on_frame(struct rill_frame_in *in)
{
    switch (in->type) {
    case RILL_F_EV: return on_ev(in);
    case RILL_F_REFUSED: return on_refused(in);
    case RILL_F_TOPIC: return on_topic(in);
    case RILL_F_CLOSED: return on_closed(in);
    default: return on_control(in);
    }
}

static void channel_lost(const char *why)
{
    if (!relay.bev)
        return;
    rill_log("the master's channel %s: stopping", why);
    bufferevent_free(relay.bev);
    relay.bev = NULL;
    struct rill_backplane_reply gone = {NULL, "hub: the master is gone", "closed"};
    while (relay.len > 0) {
        struct waiting q = relay.q[relay.head];
        relay.head = (relay.head + 1) % relay.cap;
        relay.len--;
        if (q.arg)
            q.done(q.arg, &gone);
    }
    relay.ctl.gone(relay.ctl.arg);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned char head[RILL_FRAME_HEAD];
    (void)arg;
    while (relay.bev && evbuffer_copyout(in, head, sizeof head) == sizeof head) {
        size_t size = rill_frame_size(head);
        if (size == 0) {
            channel_lost("sent a malformed frame");
            return;
        }
        if (evbuffer_get_length(in) < size)
            return;
        struct rill_frame_in f;
        const unsigned char *frame = evbuffer_pullup(in, (ev_ssize_t)size);
        if (!frame) {
            channel_lost("could not be read (out of memory)");
            return;
        }
        rill_frame_open(&f, frame, size);
        if (on_frame(&f) != 0) {
            channel_lost("sent a malformed frame");
            return;
        }
        if (relay.bev) /* still ours: nothing on the way closed it */
            evbuffer_drain(in, size);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        channel_lost("closed");
}

/* ---- start and stop ----------------------------------------------------------------- */

int rill_hub_relay_start(struct rill_worker *w, int fd, const struct rill_relay_control *ctl)
{
    evutil_make_socket_nonblocking(fd);
    relay.bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!relay.bev)
        return -1;
    relay.bp = (struct rill_backplane){
        "relay", relay_publish, relay_close, relay_disconnect, relay_configure, relay_forget,
        NULL,    NULL,          NULL};
    relay.w = w;
    relay.ctl = *ctl;
    relay.pid = (uint64_t)getpid();
    rill_background_lead(0); /* the `once` tasks wait for the master's LEAD */
    bufferevent_setcb(relay.bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(relay.bev, EV_READ);
    rill_hub_use(&relay.bp);
    return 0;
}

void rill_hub_relay_stop(void)
{
    flush_now(); /* a last hub.disconnect or hub.configure reaches the master */
    if (relay.bev)
        bufferevent_free(relay.bev);
    relay.bev = NULL;
    relay.len = 0;
    free(relay.q);
    relay.q = NULL;
    relay.cap = relay.head = 0;
    rill_hub_use(NULL);
}
