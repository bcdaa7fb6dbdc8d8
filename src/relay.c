/* SPDX-License-Identifier: MIT */
/*
 * The master's end of the relay. Only here are hub ids assigned, so every
 * worker sees each topic's events in one order and keeps the same history
 * (relay_history.c bounds it exactly as hub.c does). Each frame to a
 * worker is queued on its channel in the order it was decided, so a
 * snapshot is followed by exactly the events after it.
 *
 * No Lua here, and nothing on the request path: the master only relays.
 * A worker that stops reading (a Lua loop that never yields, a SIGSTOP)
 * would make its queue grow without bound: past max_queue the master is
 * told (overflow) and kills it; the restarted worker gets a new snapshot.
 */
#include "relay.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

struct rill_relay_peer {
    struct rill_relay *r;
    struct bufferevent *bev; /* NULL once the channel is lost */
    uint64_t pid;
    void *owner;
    int overflowed;
    size_t slack; /* its snapshot: queued at once, and no sign of a stuck worker */
    struct rill_relay_peer *prev, *next;
};

struct rill_relay {
    struct event_base *base;
    struct rill_history *h;
    struct rill_relay_hooks hooks;
    struct rill_relay_peer *peers;
    size_t max_queue;
    struct event *sweep;
};

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- sending -------------------------------------------------------------------------- */

static void check_queue(struct rill_relay_peer *p)
{
    if (p->overflowed || !p->bev)
        return;
    if (evbuffer_get_length(bufferevent_get_output(p->bev)) > p->r->max_queue + p->slack) {
        p->overflowed = 1;
        p->r->hooks.overflow(p->r->hooks.arg, p->owner);
    }
}

static void send_to(struct rill_relay_peer *p, const struct rill_frame_out *f)
{
    if (!p->bev)
        return;
    bufferevent_write(p->bev, f->p, f->len);
    check_queue(p);
}

/*
 * Sends the finished frame f to every worker but skip (NULL: to all), then
 * releases it; -1 (nothing sent) if it could not be made (out of memory).
 */
static int broadcast(struct rill_relay *r, struct rill_frame_out *f, struct rill_relay_peer *skip)
{
    int rc = rill_frame_end(f);
    if (rc == 0) {
        struct rill_relay_peer *p = r->peers, *next;
        for (; p; p = next) {
            next = p->next; /* overflow may remove p */
            if (p != skip)
                send_to(p, f);
        }
    } else {
        rill_log("relay: a frame could not be made (out of memory); it is lost");
    }
    rill_frame_release(f);
    return rc;
}

static void send_one(struct rill_relay_peer *p, struct rill_frame_out *f)
{
    if (rill_frame_end(f) == 0)
        send_to(p, f);
    rill_frame_release(f);
}

static void ev_frame(struct rill_frame_out *f, uint64_t origin, uint64_t token,
                     const struct rill_history_event *e, const char *trace, size_t trace_len)
{
    rill_frame_begin(f, RILL_F_EV);
    rill_frame_u64(f, origin);
    rill_frame_u64(f, token);
    rill_frame_str(f, e->topic, strlen(e->topic));
    rill_frame_str(f, e->epoch, strlen(e->epoch));
    rill_frame_u64(f, e->seq);
    rill_frame_str(f, e->id, e->id_len);
    rill_frame_str(f, e->wire, e->wire_len);
    rill_frame_str(f, e->fields, e->fields_len);
    rill_frame_u64(f, (uint64_t)(e->at * 1e6));
    rill_frame_opt(f, RILL_OPT_STRING, trace, trace_len); /* the publisher's, with debug logs */
}

static void refuse(struct rill_relay_peer *p, uint64_t token, const char *msg, const char *code)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_REFUSED);
    rill_frame_u64(&f, token);
    rill_frame_str(&f, msg, strlen(msg));
    rill_frame_opt(&f, RILL_OPT_STRING, code, code ? strlen(code) : 0);
    send_one(p, &f);
}

/* The refusal a worker's publisher sees, as the in-process hub words it. */
static void refuse_result(struct rill_relay_peer *p, uint64_t token, const char *topic,
                          enum rill_history_result res)
{
    char msg[256];
    const char *code = NULL;
    switch (res) {
    case RILL_HISTORY_CLOSED: snprintf(msg, sizeof msg, "topic '%.200s' is closed", topic); break;
    case RILL_HISTORY_LIMIT:
        snprintf(msg, sizeof msg, "hub: too many topics (max_topics = %zu)",
                 p->r->h ? rill_history_max_topics(p->r->h) : 0);
        code = "limit";
        break;
    case RILL_HISTORY_BADID: snprintf(msg, sizeof msg, "hub: id longer than 128 bytes"); break;
    default: snprintf(msg, sizeof msg, "hub: out of memory"); break;
    }
    refuse(p, token, msg, code);
}

/* ---- the snapshot ---------------------------------------------------------------------- */

static void snap_topic(void *arg, const char *name, const char *epoch, uint64_t last_seq,
                       uint64_t first_seq, int closed)
{
    struct rill_frame_out f = {0};
    (void)last_seq;
    rill_frame_begin(&f, RILL_F_TOPIC);
    rill_frame_str(&f, name, strlen(name));
    rill_frame_str(&f, epoch, strlen(epoch));
    rill_frame_u64(&f, first_seq - 1); /* the history starts after it */
    rill_frame_u64(&f, (uint64_t)closed);
    send_one(arg, &f);
}

static void snap_event(void *arg, const struct rill_history_event *e)
{
    struct rill_frame_out f = {0};
    ev_frame(&f, 0, 0, e, NULL, 0);
    send_one(arg, &f);
}

/* Topics first, then every event in the master's publish order (the order evictions follow). */
static void send_snapshot(struct rill_relay_peer *p)
{
    struct rill_frame_out f = {0};
    rill_history_foreach(p->r->h, snap_topic, NULL, p);
    rill_history_foreach_event(p->r->h, snap_event, p);
    rill_frame_begin(&f, RILL_F_SNAP_END);
    send_one(p, &f);
    p->slack = evbuffer_get_length(bufferevent_get_output(p->bev));
}

/* ---- receiving ------------------------------------------------------------------------ */

static int on_pub(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    size_t tlen, ilen, plen, slen, flen;
    const char *id;
    uint64_t token = rill_frame_get_u64(in);
    const char *topic = rill_frame_get_str(in, &tlen);
    rill_frame_get_opt(in, &id, &ilen);
    const char *prefix = rill_frame_get_str(in, &plen);
    const char *suffix = rill_frame_get_str(in, &slen);
    const char *fields = rill_frame_get_str(in, &flen);
    const char *trace = NULL;
    size_t trace_len = 0;
    if (rill_frame_get_opt(in, &trace, &trace_len) == RILL_OPT_NONE || trace_len > 32)
        trace = NULL, trace_len = 0; /* a trace id is 32 hex digits: anything else is not sent on */
    if (rill_frame_done(in) != 0 || tlen == 0 || strlen(topic) != tlen)
        return -1;
    const struct rill_history_event *e;
    enum rill_history_result res = rill_history_publish(p->r->h, topic, id, ilen, prefix, plen,
                                                        suffix, slen, fields, flen, wall_now(), &e);
    if (res != RILL_HISTORY_OK) {
        refuse_result(p, token, topic, res);
        return 0;
    }
    struct rill_frame_out f = {0};
    ev_frame(&f, p->pid, token, e, trace, trace_len);
    if (broadcast(p->r, &f, NULL) != 0) /* the publisher must hear, not wait forever */
        refuse(p, token, "hub: out of memory in the master (the event may reach a later snapshot)",
               NULL);
    return 0;
}

static int on_close(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    size_t tlen;
    uint64_t token = rill_frame_get_u64(in);
    const char *topic = rill_frame_get_str(in, &tlen);
    if (rill_frame_done(in) != 0 || tlen == 0 || strlen(topic) != tlen)
        return -1;
    enum rill_history_result res = rill_history_close(p->r->h, topic);
    if (res != RILL_HISTORY_OK) {
        refuse_result(p, token, topic, res);
        return 0;
    }
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_CLOSED);
    rill_frame_u64(&f, p->pid);
    rill_frame_u64(&f, token);
    rill_frame_str(&f, topic, tlen);
    broadcast(p->r, &f, NULL);
    return 0;
}

static int on_disconnect(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    size_t tlen;
    const char *topic = rill_frame_get_str(in, &tlen);
    if (rill_frame_done(in) != 0)
        return -1;
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, RILL_F_DISCONNECT);
    rill_frame_u64(&f, p->pid);
    rill_frame_str(&f, topic, tlen);
    broadcast(p->r, &f, p); /* the origin did its own */
    return 0;
}

static int on_config(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    struct rill_history_config c;
    c.history = (size_t)rill_frame_get_u64(in);
    c.history_bytes = (size_t)rill_frame_get_u64(in);
    c.history_age = (double)rill_frame_get_u64(in) / 1e6;
    c.max_topics = (size_t)rill_frame_get_u64(in);
    c.total_bytes = (size_t)rill_frame_get_u64(in);
    if (rill_frame_done(in) != 0 || !c.history || !c.history_bytes || !c.max_topics ||
        !c.total_bytes)
        return -1;
    p->r->hooks.config(p->r->hooks.arg, p->owner, &c);
    return 0;
}

#define MAX_FILES 4096

static int on_files(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    uint64_t n = rill_frame_get_u64(in);
    if (n > MAX_FILES)
        return -1;
    const char **paths = calloc(n ? n : 1, sizeof *paths);
    size_t len;
    if (!paths)
        return 0;
    for (uint64_t i = 0; i < n; i++)
        paths[i] = rill_frame_get_str(in, &len);
    if (rill_frame_done(in) == 0)
        p->r->hooks.files(p->r->hooks.arg, p->owner, paths, (size_t)n);
    free(paths);
    return rill_frame_done(in);
}

static int on_frame(struct rill_relay_peer *p, struct rill_frame_in *in)
{
    size_t len;
    switch (in->type) {
    case RILL_F_PUB: return on_pub(p, in);
    case RILL_F_CLOSE: return on_close(p, in);
    case RILL_F_DISCONNECT: return on_disconnect(p, in);
    case RILL_F_CONFIG: return on_config(p, in);
    case RILL_F_FILES: return on_files(p, in);
    case RILL_F_READY:
        if (rill_frame_done(in) != 0)
            return -1;
        p->r->hooks.ready(p->r->hooks.arg, p->owner);
        return 0;
    case RILL_F_DRAINING:
        if (rill_frame_done(in) != 0)
            return -1;
        p->r->hooks.draining(p->r->hooks.arg, p->owner);
        return 0;
    case RILL_F_FAILED: {
        const char *msg = rill_frame_get_str(in, &len);
        if (rill_frame_done(in) != 0)
            return -1;
        p->r->hooks.failed(p->r->hooks.arg, p->owner, msg);
        return 0;
    }
    default: return -1;
    }
}

static void lose(struct rill_relay_peer *p, int broken)
{
    if (!p->bev)
        return;
    bufferevent_free(p->bev);
    p->bev = NULL;
    p->r->hooks.lost(p->r->hooks.arg, p->owner, broken);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct rill_relay_peer *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned char head[RILL_FRAME_HEAD];
    while (p->bev && evbuffer_copyout(in, head, sizeof head) == sizeof head) {
        size_t size = rill_frame_size(head);
        if (size && evbuffer_get_length(in) < size)
            return;
        struct rill_frame_in f;
        const unsigned char *frame = size ? evbuffer_pullup(in, (ev_ssize_t)size) : NULL;
        if (!frame || rill_frame_open(&f, frame, size) != 0 || on_frame(p, &f) != 0) {
            rill_log("relay: worker %llu broke the protocol; its channel is closed",
                     (unsigned long long)p->pid);
            lose(p, 1);
            return;
        }
        if (p->bev) /* a hook may have lost it */
            evbuffer_drain(in, size);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    /*
     * A write error (EPIPE: the worker exited) may come before its last
     * frames were read, a FAILED with the Lua error say: they come first.
     */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        rill_relay_read_now(arg);
        lose(arg, 0);
    }
}

/* ---- peers ------------------------------------------------------------------------------ */

struct rill_relay_peer *rill_relay_add(struct rill_relay *r, int fd, uint64_t pid, void *owner)
{
    struct rill_relay_peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    evutil_make_socket_nonblocking(fd);
    p->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!p->bev) {
        free(p);
        return NULL;
    }
    p->r = r;
    p->pid = pid;
    p->owner = owner;
    p->next = r->peers;
    if (r->peers)
        r->peers->prev = p;
    r->peers = p;
    bufferevent_setcb(p->bev, on_read, NULL, on_event, p);
    bufferevent_enable(p->bev, EV_READ);
    p->slack = SIZE_MAX / 2; /* while the snapshot is queued */
    send_snapshot(p);
    return p;
}

void rill_relay_close_all(struct rill_relay *r)
{
    for (struct rill_relay_peer *p = r->peers; p; p = p->next) {
        if (!p->bev)
            continue;
        evutil_socket_t fd = bufferevent_getfd(p->bev);
        bufferevent_setfd(p->bev, -1); /* its free, maybe deferred, must not close it again */
        close(fd);
    }
}

void rill_relay_read_now(struct rill_relay_peer *p)
{
    if (!p || !p->bev)
        return;
    struct evbuffer *in = bufferevent_get_input(p->bev);
    evutil_socket_t fd = bufferevent_getfd(p->bev);
    evbuffer_unfreeze(in, 0); /* a bufferevent's input takes bytes from its own reads only */
    while (evbuffer_read(in, fd, -1) > 0)
        ;
    evbuffer_freeze(in, 0);
    on_read(p->bev, p);
}

static void send_control(struct rill_relay_peer *p, enum rill_frame_type type, uint64_t arg,
                         int has_arg)
{
    struct rill_frame_out f = {0};
    rill_frame_begin(&f, type);
    if (has_arg)
        rill_frame_u64(&f, arg);
    send_one(p, &f);
}

void rill_relay_configure(struct rill_relay *r, const struct rill_history_config *cfg)
{
    rill_history_configure(r->h, cfg);
}

void rill_relay_accept(struct rill_relay_peer *p)
{
    send_control(p, RILL_F_ACCEPT, 0, 0);
}

void rill_relay_lead(struct rill_relay_peer *p, int lead)
{
    send_control(p, RILL_F_LEAD, lead ? 1 : 0, 1);
}

void rill_relay_drain(struct rill_relay_peer *p, double seconds)
{
    send_control(p, RILL_F_DRAIN, (uint64_t)(seconds * 1000), 1);
}

void rill_relay_remove(struct rill_relay_peer *p)
{
    if (!p)
        return;
    struct rill_relay *r = p->r;
    if (p->prev)
        p->prev->next = p->next;
    else
        r->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->bev)
        bufferevent_free(p->bev);
    free(p);
}

/* ---- the relay ---------------------------------------------------------------------------- */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct rill_relay *r = arg;
    (void)fd, (void)what;
    rill_history_sweep(r->h, wall_now());
}

struct rill_relay *rill_relay_new(struct event_base *base, size_t max_queue,
                                  const struct rill_relay_hooks *hooks)
{
    struct rill_relay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = base;
    r->hooks = *hooks;
    r->max_queue = max_queue;
    r->h = rill_history_new(&rill_history_defaults);
    r->sweep = event_new(base, -1, EV_PERSIST, on_sweep, r);
    if (!r->h || !r->sweep) {
        rill_relay_free(r);
        return NULL;
    }
    struct timeval ten = {10, 0};
    event_add(r->sweep, &ten);
    return r;
}

void rill_relay_stats(const struct rill_relay *r, struct rill_history_stats *st, size_t *max_queue)
{
    rill_history_stats(r->h, st);
    *max_queue = 0;
    for (struct rill_relay_peer *p = r->peers; p; p = p->next) {
        size_t q = p->bev ? evbuffer_get_length(bufferevent_get_output(p->bev)) : 0;
        if (q > *max_queue)
            *max_queue = q;
    }
}

void rill_relay_free(struct rill_relay *r)
{
    if (!r)
        return;
    while (r->peers)
        rill_relay_remove(r->peers);
    if (r->sweep)
        event_free(r->sweep);
    rill_history_free(r->h);
    free(r);
}
