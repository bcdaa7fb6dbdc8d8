/* SPDX-License-Identifier: MIT */
/*
 * The in-memory hub: topics with a bounded history, publish, subscribe.
 *
 * An event is encoded once, at publish, into a refcounted block (struct
 * wire) that every subscriber's output buffer references: fan-out copies no
 * payload. A subscriber is only a cursor into its topic's history, so the
 * publisher never blocks and there is no per-subscriber queue. A subscriber
 * that lags more than its bound behind the newest event, or whose next event
 * already left the history, is disconnected (its client resumes with
 * Last-Event-ID, the default) or skips ahead after an in-band gap event.
 *
 * Ids are "<topic epoch>-<seq>": short and CORS-safe, and an id from before
 * a restart (another epoch) is recognised as unknown rather than misread.
 *
 * Memory is bounded globally too, since topic names often come from
 * requests: all histories together stay under total_history_bytes (the
 * oldest events of any topic go first: every event is also on one list in
 * publish order), and there are at most max_topics topics. A new topic past
 * that bound first makes room by forgetting idle ones; a closed topic is
 * remembered as closed (so it never reopens) for as long as the bound allows.
 */
#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backplane.h"
#include "compress.h"
#include "effects.h"
#include "frame.h"
#include "hub.h"
#include "log.h"
#include "luanum.h"
#include "metrics.h"
#include "request.h"
#include "sched.h"

#define EVENT_MT "rill.hub.event"
#define SUB_MT   "rill.subscription"
#define BUCKETS  1024
/* What an event costs the global budget beyond its bytes: its C and Lua bookkeeping. */
#define EVENT_OVERHEAD 256
#define MAX_COUNT      1000000000  /* the largest history, queue or max_topics accepted */
#define MAX_BYTES      (1LL << 40) /* the largest byte budget accepted */
/* Seconds a followed topic stays followed once its last subscriber left: a reconnect resumes here.
 */
#define FOLLOW_GRACE 10.0

struct hub_config {
    size_t history;       /* events kept per topic */
    size_t history_bytes; /* bytes kept per topic */
    double history_age;   /* seconds an event is kept */
    size_t queue;         /* how far a subscriber may lag, in events */
    int drop_oldest;      /* overflow: skip ahead with a gap event, not disconnect */
    size_t max_topics;    /* topics at most, closed ones included */
    size_t total_bytes;   /* all histories together, EVENT_OVERHEAD per event included */
};

static struct hub_config config = {1000, 4 * 1024 * 1024, 3600, 1000, 0, 10000, 64 * 1024 * 1024};

struct wire { /* the encoded event, shared by the history and queued writes */
    int refs;
    size_t len;
    char bytes[];
};

struct hub_event {
    struct wire *wire;
    struct wire *gz, *gz_alone; /* compressed in its topic's window, and alone (compress.h) */
    unsigned long crc;          /* of wire's bytes, once a gzip'd subscriber needed it */
    unsigned gz_window;         /* gz's window */
    unsigned gz_start : 1;      /* gz opens its window */
    unsigned crc_set : 1;
    size_t gz_bytes; /* what gz and gz_alone cost the global history budget */
    struct topic *topic;
    struct hub_event *older, *newer; /* every topic's events, in publish order */
    uint64_t seq;
    double at;
    int ud_ref;      /* the Lua object (rill.hub.event), anchored while in history */
    uint64_t sid[2]; /* an ordered topic's id, parsed */
    char id[136];    /* the wire id */
};

struct topic {
    char *name;
    struct topic *next_in_bucket;
    char epoch[8];
    uint64_t last_seq; /* of the newest event; 0 before the first */
    struct hub_event **ring;
    size_t cap, head, count; /* history: count events from ring[head], oldest first */
    size_t bytes;
    uint64_t closed; /* 0, or the order of its closing (the oldest closed is forgotten first) */
    struct subscription *subs;
    int nsubs;
    struct rill_gz_topic *gz; /* while it has gzip'd pumped subscribers: their shared compressor */
    /*
     * A followed topic (a backplane with load: Redis), whose ids are ordered
     * stream ids. loaded: the backplane delivered what it had; loading: it
     * was asked to. floor: the id of the newest event known to have left
     * the history (floor_set), or, strict, of the last one of an incarnation
     * the store lost. last_sid: the newest event's id (has_last).
     */
    int ordered, loaded, loading, floor_set, floor_strict, has_last;
    uint64_t floor[2], last_sid[2];
    double idle_since; /* a followed topic: when its last subscriber left (0: it has some) */
};

struct subscription {
    struct rill_resource res; /* first member */
    struct rill_worker *w;
    struct topic *topic;
    struct subscription *prev, *next;
    uint64_t cursor; /* seq of the last event delivered */
    size_t queue;
    int drop_oldest;
    int dropped;     /* disconnected by the hub: 1 by hub.disconnect, 2 too slow */
    const char *gap; /* an in-band notice to deliver first ("expired", ...), or NULL */
    struct rill_waiter wait;
    rill_pump_fn pump;   /* set while C pumps the stream (rill_hub_pump), no task waiting */
    struct rill_gzs *gz; /* a gzip'd pumped stream's own part (rill_hub_pump_gzip), or NULL */
    void *pump_arg;
    char *resume; /* waiting for its topic's load: its Last-Event-ID ("" for none), else NULL */
    struct rill_request *req; /* its request (a handler's subscription lives no longer), or NULL */
    int reloaded;             /* its Last-Event-ID was newer than a load: a second load was asked */
};

static struct topic *buckets[BUCKETS];
static struct rill_backplane *backplane; /* the in-process one by default (below) */
static struct hub_stats stats;
static struct hub_event *oldest, *newest; /* the global publish order */
static uint64_t closings;                 /* topics closed so far, to order them */

/* ---- wire blocks and events ----------------------------------------------------- */

static void wire_unref(struct wire *w)
{
    if (w && --w->refs == 0)
        free(w);
}

/* evbuffer_add_reference's cleanup: a queued write of the event went out. */
static void wire_written(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    wire_unref(arg);
}

static const void *event_mt; /* the metatable of published events, to know one fast */

int rill_hub_write(struct evbuffer *out, lua_State *L, int idx)
{
    struct wire **wp = lua_touserdata(L, idx);
    if (!wp || !lua_getmetatable(L, idx))
        return 0;
    int is_event = lua_topointer(L, -1) == event_mt;
    lua_pop(L, 1);
    if (!is_event || !*wp)
        return 0;
    struct wire *w = *wp;
    w->refs++;
    evbuffer_add_reference(out, w->bytes, w->len, wire_written, w);
    return 1;
}

static double now(struct rill_worker *w)
{
    struct timeval tv;
    event_base_gettimeofday_cached(w->base, &tv);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void hub_event_free(lua_State *L, struct hub_event *e)
{
    luaL_unref(L, LUA_REGISTRYINDEX, e->ud_ref);
    wire_unref(e->wire);
    wire_unref(e->gz);
    wire_unref(e->gz_alone);
    free(e);
}

/* A wire of len bytes, one reference; NULL: out of memory. */
static struct wire *wire_of(const void *bytes, size_t len)
{
    struct wire *w = malloc(sizeof *w + len);
    if (!w)
        return NULL;
    w->refs = 1;
    w->len = len;
    memcpy(w->bytes, bytes, len);
    return w;
}

/*
 * A new event of t, compressed in t's window for its gzip'd subscribers
 * (compress.c): once, in publish order, whatever their number. With none,
 * nothing is compressed, and the window is broken.
 */
static void gz_topic_event(struct topic *t, struct hub_event *e)
{
    const unsigned char *out;
    size_t len;
    int start;
    if (!t->gz)
        return;
    if (rill_gz_topic_users(t->gz) == 0) {
        rill_gz_topic_break(t->gz);
        return;
    }
    if (rill_gz_topic_event(t->gz, e->wire->bytes, e->wire->len, &out, &len, &e->gz_window,
                            &start) != 0 ||
        !(e->gz = wire_of(out, len)))
        return; /* out of memory: its subscribers get it compressed alone */
    e->gz_start = start != 0;
    e->gz_bytes += len; /* counted with the event: evict() keeps the whole within the budget */
    stats.history_bytes += (long)len;
    stats.gz_shared++;
}

/* ---- topics ----------------------------------------------------------------------- */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static struct topic *find_topic(const char *name)
{
    for (struct topic *t = buckets[hash(name)]; t; t = t->next_in_bucket)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void new_epoch(char *epoch)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    static unsigned long long state;
    if (!state)
        state = (unsigned long long)getpid() * 2654435761u ^ (unsigned long long)time(NULL);
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    unsigned long long v = state >> 16;
    for (int i = 0; i < 4; i++, v /= 36)
        epoch[i] = digits[v % 36];
    epoch[4] = '\0';
}

static void trim(lua_State *L, struct rill_worker *w, struct topic *t);
static void maybe_free_topic(lua_State *L, struct topic *t, int now_or_never);
static void drop_oldest_event(lua_State *L, struct topic *t);

/* Every 10 s: history ages out of topics nobody touches, idle topics go. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct rill_worker *w = arg;
    (void)fd, (void)what;
    for (int b = 0; b < BUCKETS; b++) {
        struct topic *t = buckets[b], *next;
        for (; t; t = next) {
            next = t->next_in_bucket;
            trim(w->L, w, t);
            maybe_free_topic(w->L, t, 0);
        }
    }
}

static struct event *sweep;

static void start_sweep(struct rill_worker *w)
{
    if (sweep || !w->server)
        return; /* under rill.run, a timer forever would keep the loop from ever idling */
    sweep = event_new(w->base, -1, EV_PERSIST, on_sweep, w);
    struct timeval ten = {10, 0};
    event_add(sweep, &ten);
}

/* Unlinks t from its bucket and frees it, with what history it still has. */
static void forget_topic(lua_State *L, struct topic *t)
{
    struct topic **p = &buckets[hash(t->name)];
    while (*p != t)
        p = &(*p)->next_in_bucket;
    *p = t->next_in_bucket;
    while (t->count > 0)
        drop_oldest_event(L, t);
    if (backplane->unfollow)
        backplane->unfollow(backplane, t->name);
    free(t->ring);
    free(t->name);
    rill_gz_topic_free(t->gz);
    free(t);
    stats.topics--;
}

/*
 * At max_topics: forgets the idle topics (aged out, no subscriber), and if
 * that is not enough, the closed topic with nothing left that was closed
 * first. Returns whether there is room now.
 */
static int make_room(lua_State *L, struct rill_worker *w)
{
    struct topic *closed = NULL;
    for (int b = 0; b < BUCKETS; b++) {
        struct topic *t = buckets[b], *next;
        for (; t; t = next) {
            next = t->next_in_bucket;
            trim(L, w, t);
            maybe_free_topic(L, t, 1);
        }
    }
    if ((size_t)stats.topics < config.max_topics)
        return 1;
    for (int b = 0; b < BUCKETS; b++)
        for (struct topic *t = buckets[b]; t; t = t->next_in_bucket)
            if (t->closed && !t->count && !t->subs && (!closed || t->closed < closed->closed))
                closed = t;
    if (closed)
        forget_topic(L, closed);
    return closed != NULL;
}

/*
 * The topic, created on first use; NULL past max_topics when no room can be
 * made (push_too_many says so to Lua).
 */
static struct topic *get_topic(lua_State *L, const char *name)
{
    struct topic *t = find_topic(name);
    if (t)
        return t;
    struct rill_worker *w = rill_worker_get(L);
    if ((size_t)stats.topics >= config.max_topics && !make_room(L, w)) {
        stats.refused++;
        return NULL;
    }
    start_sweep(w);
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        luaL_error(L, "out of memory");
    }
    new_epoch(t->epoch);
    unsigned b = hash(name);
    t->next_in_bucket = buckets[b];
    buckets[b] = t;
    stats.topics++;
    return t;
}

void rill_hub_bounds(struct rill_hub_bounds *b)
{
    *b = (struct rill_hub_bounds){config.history, config.history_bytes, config.history_age,
                                  config.max_topics, config.total_bytes};
}

const char *rill_hub_too_many(lua_State *L)
{
    return lua_pushfstring(L, "hub: too many topics (max_topics = %I)",
                           (lua_Integer)config.max_topics);
}

/* nil, "hub: too many topics (max_topics = N)", "limit" */
static int push_too_many(lua_State *L)
{
    lua_pushnil(L);
    rill_hub_too_many(L);
    lua_pushliteral(L, "limit");
    return 3;
}

static struct hub_event *history_at(struct topic *t, size_t i)
{
    return t->ring[(t->head + i) % t->cap];
}

static size_t cost(const struct hub_event *e)
{
    return e->wire->len + EVENT_OVERHEAD;
}

/* An ordered topic's floor only rises: an id at or after it resumes with nothing lost. */
static void raise_floor(struct topic *t, const uint64_t id[2])
{
    if (t->floor_set && rill_stream_id_cmp(id, t->floor) <= 0)
        return; /* a strict floor above it stays as it is */
    memcpy(t->floor, id, sizeof t->floor);
    t->floor_set = 1;
    t->floor_strict = 0;
}

static void drop_oldest_event(lua_State *L, struct topic *t)
{
    struct hub_event *e = history_at(t, 0);
    if (e->older)
        e->older->newer = e->newer;
    else
        oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        newest = e->older;
    stats.history_bytes -= (long)(cost(e) + e->gz_bytes);
    if (t->ordered) /* resuming at or after it loses nothing */
        raise_floor(t, e->sid);
    t->bytes -= e->wire->len;
    t->head = (t->head + 1) % t->cap;
    t->count--;
    hub_event_free(L, e);
}

/* Enforces the history bounds: count, bytes and age. */
static void trim(lua_State *L, struct rill_worker *w, struct topic *t)
{
    double oldest = now(w) - config.history_age;
    while (t->count > 0 && (t->count > config.history || t->bytes > config.history_bytes ||
                            history_at(t, 0)->at < oldest))
        drop_oldest_event(L, t);
}

/*
 * The global budget: the oldest events of all topics go first (the oldest
 * event overall is always the oldest of its topic). Topics left empty are
 * not freed here (the publisher holds one): the sweep and make_room do it.
 */
static void evict(lua_State *L)
{
    while (oldest && (size_t)stats.history_bytes > config.total_bytes) {
        drop_oldest_event(L, oldest->topic);
        stats.evicted++;
    }
}

/*
 * An open topic with no history and no subscriber is forgotten. A closed
 * one is kept, so that it stays closed, until make_room needs its place.
 */
static void maybe_free_topic(lua_State *L, struct topic *t, int now_or_never)
{
    if (t->subs)
        return;
    if (!backplane->load) {
        if (t->count == 0 && !t->closed)
            forget_topic(L, t);
        return;
    }
    /*
     * A followed topic is the backplane's copy: with nobody here to read it,
     * it is not followed, but only after a grace (a client that reconnects
     * resumes here without a new load), or at once when room is needed.
     */
    double at = now(rill_worker_get(L));
    if (!t->idle_since)
        t->idle_since = at;
    if (now_or_never || at - t->idle_since >= FOLLOW_GRACE)
        forget_topic(L, t);
}

static int push_event(struct topic *t, struct hub_event *e)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct hub_event **ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < t->count; i++)
            ring[i] = history_at(t, i);
        free(t->ring);
        t->ring = ring;
        t->cap = cap;
        t->head = 0;
    }
    t->ring[(t->head + t->count) % t->cap] = e;
    t->count++;
    t->bytes += e->wire->len;
    e->topic = t;
    e->older = newest;
    if (newest)
        newest->newer = e;
    else
        oldest = e;
    newest = e;
    stats.history_bytes += (long)cost(e);
    return 0;
}

/* ---- subscriptions: waking --------------------------------------------------------- */

/* The warning for a subscriber cut for being too slow, naming its request. */
static void warn_slow(struct subscription *s)
{
    char safe[256];
    rill_log_at(RILL_LOG_WARN,
                "hub: request %s: subscriber of '%s' too slow, disconnected (it may resume)",
                s->req ? rill_request_id(s->req) : "-",
                s->topic ? rill_log_safe(s->topic->name, safe, sizeof safe) : "?");
}

/*
 * Poked with nobody waiting: a disconnected subscriber is parked elsewhere,
 * typically on its slow client, so its request is cut off.
 */
static void sub_unwaited(struct rill_waiter *w)
{
    struct subscription *s =
        (struct subscription *)((char *)w - offsetof(struct subscription, wait));
    if (s->pump) {
        s->pump(s->pump_arg); /* no task: the pump writes what there is */
        return;
    }
    if (!s->dropped || !s->res.owner || !s->res.owner->abort)
        return;
    if (s->dropped == 2)
        warn_slow(s);
    s->res.owner->abort(s->res.owner, s->dropped == 2); /* closes s as one of its resources */
}

/* Deferred: publish runs inside the publisher's handler, never inside another's. */
static void wake(struct subscription *s)
{
    if (s->pump)
        rill_waiter_poke(&s->wait);
    else
        rill_waiter_wake(&s->wait);
}

static void wake_all(struct topic *t)
{
    for (struct subscription *s = t->subs; s; s = s->next)
        wake(s);
}

/*
 * After a publish: a subscriber with the disconnect policy that now lags more
 * than its bound is dropped at once, even while parked on a client that
 * stopped reading; its client resumes with Last-Event-ID.
 */
static void drop_laggards(struct topic *t)
{
    for (struct subscription *s = t->subs; s; s = s->next) {
        if (!s->drop_oldest && !s->dropped && !s->resume && t->last_seq - s->cursor > s->queue) {
            s->dropped = 2;
            stats.dropped++;
            rill_waiter_poke(&s->wait);
        }
    }
}

/* ---- delivery: events in the backplane's order --------------------------------- */

/*
 * The backplane's position for t is epoch, last_seq. When the topic here is
 * elsewhere, its history restarts there:
 *  - the same epoch, further on: an event did not make it here (no memory,
 *    no room for the topic), so a subscriber that had not read up to there
 *    missed it, and gets an in-band "expired" notice;
 *  - another epoch: the backplane forgot the topic and made it anew (or it
 *    is new here). A subscriber of an incarnation that had events either
 *    had not read them all or missed the new one's first: a notice too. A
 *    topic made here by a subscriber alone, with no event yet, is just
 *    catching up: its live subscribers missed nothing.
 * The new incarnation is open until the backplane says otherwise.
 */
static void align(lua_State *L, struct topic *t, const char *epoch, uint64_t last_seq)
{
    int same_epoch = strcmp(t->epoch, epoch) == 0;
    if (same_epoch && t->last_seq == last_seq)
        return;
    uint64_t had = t->last_seq;
    while (t->count > 0)
        drop_oldest_event(L, t);
    for (struct subscription *s = t->subs; s; s = s->next) {
        if (s->resume)
            continue; /* it finds where it resumes once its topic is loaded */
        int missed =
            same_epoch ? s->cursor < last_seq : had > 0 && (s->cursor < had || last_seq > 0);
        if (missed && !s->gap)
            s->gap = "expired";
        s->cursor = last_seq;
    }
    if (!same_epoch)
        t->closed = 0;
    snprintf(t->epoch, sizeof t->epoch, "%s", epoch);
    t->last_seq = last_seq;
}

/* A trace id as carried (Redis entries come from anyone): 1 to 32 hex digits, else "-". */
static const char *trace_or_dash(const char *t)
{
    size_t n = t ? strspn(t, "0123456789abcdef") : 0;
    return n > 0 && n <= 32 && t[n] == '\0' ? t : "-";
}

int rill_hub_deliver(lua_State *L, const struct rill_hub_delivery *d)
{
    struct rill_worker *w = rill_worker_get(L);
    int fields = lua_gettop(L);
    /*
     * What may raise or run Lua (allocations: a GC step runs __gc, which may
     * free a topic) comes first: the Lua object and its registry ref. Then
     * the topic, and from there on nothing but C until the event is linked.
     */
    struct wire **ud = lua_newuserdatauv(L, sizeof *ud, 1);
    *ud = NULL;
    luaL_setmetatable(L, EVENT_MT);
    lua_pushvalue(L, fields);
    lua_setiuservalue(L, -2, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the object, fields at the top again */
    struct topic *t = get_topic(L, d->topic);
    struct hub_event *e = t && d->id_len < sizeof e->id ? calloc(1, sizeof *e) : NULL;
    struct wire *wr = e ? malloc(sizeof *wr + d->wire_len) : NULL;
    if (!wr) {
        free(e);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        lua_settop(L, fields - 1);
        return -1;
    }
    align(L, t, d->epoch, d->seq - 1);
    wr->refs = 2; /* the Lua object and the history */
    wr->len = d->wire_len;
    memcpy(wr->bytes, d->wire, d->wire_len);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    *(struct wire **)lua_touserdata(L, -1) = wr;
    e->wire = wr;
    e->seq = d->seq;
    e->at = d->at;
    e->ud_ref = ref;
    memcpy(e->id, d->id, d->id_len);
    e->id[d->id_len] = '\0';
    if (t->ordered && rill_stream_id_parse(d->id, d->id_len, e->sid)) {
        memcpy(t->last_sid, e->sid, sizeof t->last_sid);
        t->has_last = 1;
    }
    if (push_event(t, e) != 0) {
        free(e);
        wr->refs--;
        luaL_unref(L, LUA_REGISTRYINDEX, ref); /* the Lua object frees wr */
        lua_settop(L, fields - 1);
        return -1;
    }
    t->last_seq = e->seq;
    stats.published++;
    gz_topic_event(t, e);
    /* before trim and evict, which may free e (an event past the bounds goes at once) */
    if (d->trace && rill_log_enabled(RILL_LOG_DEBUG)) {
        char safe[256];
        rill_log_at(RILL_LOG_DEBUG, "hub: event %.*s of '%s' to %d subscribers here (trace %s)",
                    (int)d->id_len, d->id, rill_log_safe(d->topic, safe, sizeof safe), t->nsubs,
                    trace_or_dash(d->trace));
    }
    trim(L, w, t);
    evict(L);
    drop_laggards(t);
    wake_all(t);
    lua_settop(L, fields - 1);
    return 0;
}

int rill_hub_deliver_topic(lua_State *L, const char *name, const char *epoch, uint64_t last_seq,
                           int closed)
{
    struct topic *t = get_topic(L, name);
    if (!t)
        return -1;
    align(L, t, epoch, last_seq);
    if (closed && !t->closed)
        t->closed = ++closings;
    wake_all(t);
    return 0;
}

int rill_hub_deliver_close(lua_State *L, const char *name)
{
    struct topic *t = get_topic(L, name);
    if (!t)
        return -1;
    if (!t->closed)
        t->closed = ++closings;
    wake_all(t);
    return 0;
}

/* ---- followed topics: ordered stream ids (a backplane with load) -------------------- */

int rill_stream_id_parse(const char *s, size_t len, uint64_t id[2])
{
    const char *end = s + len;
    for (int part = 0; part < 2; part++) {
        uint64_t v = 0;
        int digits = 0;
        for (; s < end && *s >= '0' && *s <= '9'; s++, digits++) {
            unsigned d = (unsigned)(*s - '0');
            if (digits == 20 || v > (UINT64_MAX - d) / 10)
                return 0;
            v = v * 10 + d;
        }
        if (digits == 0 || (part == 0 && (s == end || *s++ != '-')))
            return 0;
        id[part] = v;
    }
    return s == end;
}

int rill_stream_id_cmp(const uint64_t a[2], const uint64_t b[2])
{
    if (a[0] != b[0])
        return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

int rill_hub_deliver_reset(lua_State *L, const char *name, const char *epoch, const char *floor,
                           int strict)
{
    struct topic *t = get_topic(L, name);
    if (!t)
        return -1;
    int was_ordered = t->ordered;
    t->ordered = 1; /* first: align's drops move no floor of an unordered topic */
    align(L, t, epoch, 0);
    t->floor_set = floor && rill_stream_id_parse(floor, strlen(floor), t->floor);
    t->floor_strict = t->floor_set && strict;
    t->has_last = 0;
    for (struct subscription *s = t->subs; s; s = s->next)
        if (strict && was_ordered && !s->resume && !s->gap)
            s->gap = "expired"; /* the store lost what it had not delivered yet */
    wake_all(t);
    return 0;
}

static void resume_from(struct subscription *s, const char *last);

void rill_hub_deliver_lost(lua_State *L, const char *name, const uint64_t floor[2])
{
    struct topic *t = find_topic(name);
    (void)L;
    if (!t || !t->ordered)
        return;
    /*
     * As align does for a hole: the history restarts after it (a resume from
     * an event before it would cross it unseen), every subscriber is told
     * and moves on from here.
     */
    while (t->count > 0)
        drop_oldest_event(L, t);
    raise_floor(t, floor);
    for (struct subscription *s = t->subs; s; s = s->next) {
        if (s->resume)
            continue; /* it finds where it resumes once its topic is loaded */
        if (!s->gap)
            s->gap = "expired";
        s->cursor = t->last_seq;
    }
    wake_all(t);
}

void rill_hub_deliver_unloaded(lua_State *L, const char *name)
{
    struct topic *t = find_topic(name);
    (void)L;
    if (t)
        t->loaded = t->loading = 0;
}

/* Whether last is a stream id newer than anything delivered for t: the store may have it. */
static int newer_than_loaded(struct topic *t, const char *last)
{
    uint64_t l[2];
    return last && rill_stream_id_parse(last, strlen(last), l) &&
           (!t->has_last || rill_stream_id_cmp(l, t->last_sid) > 0);
}

/* The topic is to be loaded: the backplane is asked once. */
static void request_load(struct topic *t)
{
    if (!t->loading) {
        t->loading = 1;
        backplane->load(backplane, t->name);
    }
}

void rill_hub_deliver_loaded(lua_State *L, const char *name)
{
    struct topic *t = find_topic(name);
    (void)L;
    if (!t)
        return;
    t->loaded = 1;
    t->loading = 0;
    t->ordered = 1;
    for (struct subscription *s = t->subs; s; s = s->next) {
        if (!s->resume)
            continue;
        if (s->dropped) { /* cut meanwhile: it resumes nowhere */
            free(s->resume);
            s->resume = NULL;
            continue;
        }
        if (newer_than_loaded(t, s->resume) && !s->reloaded) {
            /* that load may have been asked before its id was made: once more */
            s->reloaded = 1;
            request_load(t);
            continue;
        }
        s->cursor = t->last_seq;
        if (*s->resume)
            resume_from(s, s->resume);
        free(s->resume);
        s->resume = NULL;
    }
    wake_all(t);
}

/* The oldest event of t whose id is after id[], by bisection (ids increase); t->count if none. */
static size_t first_after(struct topic *t, const uint64_t id[2])
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rill_stream_id_cmp(history_at(t, mid)->sid, id) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * resume_from for an ordered topic: after the newest event at or before
 * last; a gap first when events after it left the history (it is before
 * the floor), when it is not one of this topic's (malformed, newer than
 * anything the store has, or older than a history that starts at the
 * topic's beginning), or when its incarnation is gone (strict floor).
 */
static void resume_ordered(struct subscription *s, const char *last)
{
    struct topic *t = s->topic;
    uint64_t first = t->count ? history_at(t, 0)->seq : t->last_seq + 1;
    uint64_t l[2];
    s->cursor = first - 1;
    if (!rill_stream_id_parse(last, strlen(last), l)) {
        s->gap = "unknown";
        return;
    }
    int vs_floor = t->floor_set ? rill_stream_id_cmp(l, t->floor) : 1;
    if (vs_floor < 0 || (vs_floor == 0 && t->floor_strict)) {
        s->gap = t->floor_strict ? "unknown" : "expired";
        return;
    }
    if (!t->has_last || rill_stream_id_cmp(l, t->last_sid) > 0 ||
        (!t->floor_set && t->count && rill_stream_id_cmp(l, history_at(t, 0)->sid) < 0)) {
        s->gap = "unknown";
        return;
    }
    size_t i = first_after(t, l);
    s->cursor = i < t->count ? history_at(t, i)->seq - 1 : t->last_seq;
}

static int disconnect_all(const char *name)
{
    struct topic *t = find_topic(name);
    int n = 0;
    for (struct subscription *s = t ? t->subs : NULL; s; s = s->next, n++) {
        s->dropped = 1;
        rill_waiter_poke(&s->wait);
    }
    return n;
}

void rill_hub_deliver_disconnect(const char *name)
{
    disconnect_all(name);
}

/* ---- the fields subscribers read, as a backplane carries them ---------------------- */

static void blob_field(lua_State *L, struct rill_frame_out *f, int idx, const char *name)
{
    size_t len;
    int type = lua_getfield(L, idx, name);
    const char *v = type == LUA_TSTRING || type == LUA_TNUMBER ? lua_tolstring(L, -1, &len) : NULL;
    rill_frame_opt(f, type == LUA_TNUMBER ? RILL_OPT_NUMBER : RILL_OPT_STRING, v, v ? len : 0);
    lua_pop(L, 1);
}

/* event, data, retry of the table at idx into f (its id is the backplane's). */
static void blob_make(lua_State *L, int idx, struct rill_frame_out *f)
{
    blob_field(L, f, idx, "event");
    blob_field(L, f, idx, "data");
    blob_field(L, f, idx, "retry");
}

static void blob_push(lua_State *L, struct rill_frame_in *in, const char *name)
{
    const char *v;
    size_t len;
    enum rill_opt tag = rill_frame_get_opt(in, &v, &len);
    if (tag == RILL_OPT_NONE)
        return;
    lua_pushlstring(L, v, len);
    if (tag == RILL_OPT_NUMBER && !lua_stringtonumber(L, lua_tostring(L, -1)))
        ;                            /* keeps the string: it was one once */
    else if (tag == RILL_OPT_NUMBER) /* the number replaces the string */
        lua_remove(L, -2);
    lua_setfield(L, -2, name);
}

void rill_hub_fields_push(lua_State *L, const char *blob, size_t len, const char *id, size_t id_len)
{
    struct rill_frame_in in = {0, (const unsigned char *)blob, len, 0};
    lua_createtable(L, 0, 4);
    blob_push(L, &in, "event");
    blob_push(L, &in, "data");
    blob_push(L, &in, "retry");
    lua_pushlstring(L, id, id_len);
    lua_setfield(L, -2, "id");
}

/* ---- the in-process backplane ------------------------------------------------------ */

static enum rill_bp_status local_publish(struct rill_backplane *bp, const struct rill_publish *p,
                                         rill_backplane_done done, void *arg)
{
    lua_State *L = p->L;
    struct topic *t = get_topic(L, p->topic);
    struct rill_backplane_reply reply = {0};
    char idbuf[48], epoch[8];
    (void)bp;
    if (!t || t->closed) {
        reply.err = t ? lua_pushfstring(L, "topic '%s' is closed", p->topic) : rill_hub_too_many(L);
        reply.code = t ? NULL : "limit";
        done(arg, &reply);
        return RILL_BP_DONE;
    }
    /* t may be gone after an allocation (a GC step may close its last subscriber) */
    uint64_t seq = t->last_seq + 1;
    snprintf(epoch, sizeof epoch, "%s", t->epoch);
    snprintf(idbuf, sizeof idbuf, "%s-%llu", t->epoch, (unsigned long long)seq);
    const char *id = p->id ? p->id : idbuf;
    size_t id_len = p->id ? p->id_len : strlen(idbuf);
    luaL_Buffer b; /* the wire: prefix, the id line, suffix */
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, p->prefix, p->prefix_len);
    luaL_addstring(&b, "id: ");
    luaL_addlstring(&b, id, id_len);
    luaL_addchar(&b, '\n');
    luaL_addlstring(&b, p->suffix, p->suffix_len);
    luaL_pushresult(&b);
    size_t wire_len;
    const char *wire = lua_tolstring(L, -1, &wire_len);
    lua_pushvalue(L, p->fields_idx);
    lua_pushlstring(L, id, id_len);
    lua_setfield(L, -2, "id");
    struct rill_hub_delivery d = {
        p->topic, epoch, seq, id, id_len, wire, wire_len, now(rill_worker_get(L)), p->trace};
    if (rill_hub_deliver(L, &d) != 0)
        luaL_error(L, "out of memory");
    reply.id = id;
    done(arg, &reply);
    return RILL_BP_DONE;
}

static enum rill_bp_status local_close(struct rill_backplane *bp, lua_State *L, const char *topic,
                                       rill_backplane_done done, void *arg)
{
    struct rill_backplane_reply reply = {"true", NULL, NULL};
    (void)bp;
    if (rill_hub_deliver_close(L, topic) != 0) {
        reply.id = NULL;
        reply.err = rill_hub_too_many(L);
        reply.code = "limit";
    }
    done(arg, &reply);
    return RILL_BP_DONE;
}

static void local_disconnect(struct rill_backplane *bp, const char *topic)
{
    (void)bp, (void)topic; /* one worker: the hub did it */
}

static void local_configure(struct rill_backplane *bp, const struct rill_hub_bounds *b)
{
    (void)bp, (void)b;
}

static void local_forget(struct rill_backplane *bp, void *arg)
{
    (void)bp, (void)arg; /* it never waits */
}

struct rill_backplane rill_hub_local = {
    "in-process", local_publish, local_close, local_disconnect, local_configure, local_forget,
    NULL,         NULL,          NULL};
static struct rill_backplane *backplane = &rill_hub_local;

void rill_hub_use(struct rill_backplane *bp)
{
    backplane = bp ? bp : &rill_hub_local;
}

/* ---- publish and close: through the backplane ----------------------------------------- */

#define PENDING_MT "rill.hub.pending"

/*
 * A publish or close the backplane answers later: the task waits on it. It
 * is a Lua object on the caller's stack, so a task cancelled meanwhile
 * leaves it to the GC, which tells the backplane never to answer it.
 */
struct pending {
    struct rill_waiter wait;
    struct rill_backplane *bp;
    int answered;
    char *id, *err, *code;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Answers a publish or close; synchronous (in-process) or later (from a backplane callback). */
static void on_answer(void *arg, const struct rill_backplane_reply *reply)
{
    struct pending *pd = arg;
    pd->answered = 1;
    pd->id = dup_or_null(reply->id);
    pd->err = dup_or_null(reply->err ? reply->err : reply->id ? NULL : "hub: no answer");
    pd->code = dup_or_null(reply->code);
    rill_waiter_wake(&pd->wait);
}

static int pending_gc(lua_State *L)
{
    struct pending *pd = luaL_checkudata(L, 1, PENDING_MT);
    if (pd->bp && !pd->answered)
        pd->bp->forget(pd->bp, pd);
    pd->bp = NULL;
    rill_waiter_clear(&pd->wait);
    free(pd->id);
    free(pd->err);
    free(pd->code);
    pd->id = pd->err = pd->code = NULL;
    return 0;
}

static struct pending *pending_new(lua_State *L, struct rill_worker *w)
{
    struct pending *pd = lua_newuserdatauv(L, sizeof *pd, 0);
    memset(pd, 0, sizeof *pd);
    rill_waiter_init(&pd->wait, w->base, NULL);
    luaL_setmetatable(L, PENDING_MT);
    return pd;
}

/* The answer as Lua values: the id (or true), or nil, err[, code]. */
static int push_answer(lua_State *L, struct pending *pd, int as_bool)
{
    if (pd->id) {
        if (as_bool) {
            lua_pushboolean(L, 1);
        } else {
            RILL_METRIC_ADD(hub_published, 1); /* by this process's publishers */
            lua_pushstring(L, pd->id);
        }
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, pd->err);
    if (!pd->code)
        return 2;
    lua_pushstring(L, pd->code);
    return 3;
}

/* Continuations: the pending answer is the top of the stack. */
static int publish_k(lua_State *L, int status, lua_KContext ctx)
{
    struct pending *pd = luaL_checkudata(L, lua_gettop(L), PENDING_MT);
    (void)status, (void)ctx;
    if (!pd->answered) /* not yet: a spurious wake-up */
        return rill_waiter_park(L, &pd->wait, publish_k, "rill.publish");
    return push_answer(L, pd, 0);
}

static int close_k(lua_State *L, int status, lua_KContext ctx)
{
    struct pending *pd = luaL_checkudata(L, lua_gettop(L), PENDING_MT);
    (void)status, (void)ctx;
    if (!pd->answered)
        return rill_waiter_park(L, &pd->wait, close_k, "rill.close_topic");
    return push_answer(L, pd, 1);
}

/*
 * Hands the work to the backplane and answers: at once when it answered
 * at once (in-process), else once it does (the task waits, an effect).
 */
static int await(lua_State *L, struct pending *pd, enum rill_bp_status st, lua_KFunction k,
                 const char *what, int as_bool)
{
    if (st == RILL_BP_DONE)
        return push_answer(L, pd, as_bool);
    if (st == RILL_BP_GONE) {
        lua_pushnil(L);
        lua_pushliteral(L, "hub: the backplane is gone (the server is stopping)");
        lua_pushliteral(L, "closed");
        return 3;
    }
    pd->bp = backplane;
    return rill_waiter_park(L, &pd->wait, k, what);
}

/*
 * Checks, where a backplane answers later, that the caller can wait for
 * it. The error names the app's line (level 2: past rill's Lua wrapper),
 * and why publishing waits at all.
 */
static struct rill_worker *check_wait(lua_State *L, const char *what)
{
    struct rill_worker *w = rill_worker_get(L);
    if (backplane == &rill_hub_local)
        return w;
    if (!w->current) {
        luaL_where(L, 2);
        const char *whom = backplane->load ? "Redis (--hub)" : "master (--workers)";
        lua_pushfstring(L,
                        "%s waits for the hub's %s: call it inside a request handler or rill.run",
                        what, whom);
        lua_concat(L, 2);
        lua_error(L);
    }
    return rill_task_check_wait_at(L, what, 2)->w;
}

/*
 * With --log-level debug: the publishing request's trace id, carried with
 * the event to every process that delivers it, and a line saying who
 * publishes; else NULL (nothing is carried).
 */
static const char *publish_trace(struct rill_worker *w, const char *topic)
{
    if (!rill_log_enabled(RILL_LOG_DEBUG))
        return NULL;
    struct rill_task *t = w->current;
    struct rill_request *r = t && t->owner_is_request ? (struct rill_request *)t : NULL;
    const char *trace = r ? rill_request_trace(r) : NULL;
    char safe[256];
    rill_log_at(RILL_LOG_DEBUG, "hub: request %s publishes to '%s' (trace %s)",
                r ? rill_request_id(r) : "-", rill_log_safe(topic, safe, sizeof safe),
                trace ? trace : "-");
    return trace;
}

/*
 * hub.publish(topic, id|nil, prefix, suffix, fields) → id, or nil, err
 * (closed, or past max_topics: then a third value, "limit"). The Lua side
 * (lua/rill/hub.lua) encoded the event around its id line
 * (sse_encode_parts); fields is the table subscribers read.
 */
static int hub_publish(lua_State *L)
{
    struct rill_publish p = {0};
    p.topic = luaL_checkstring(L, 1);
    luaL_argcheck(L, *p.topic, 1, "a topic name expected, got an empty string");
    p.id = luaL_optlstring(L, 2, NULL, &p.id_len);
    p.prefix = luaL_checklstring(L, 3, &p.prefix_len);
    p.suffix = luaL_checklstring(L, 4, &p.suffix_len);
    luaL_checktype(L, 5, LUA_TTABLE);
    luaL_argcheck(L, !p.id || p.id_len <= 128, 2, "id longer than 128 bytes");
    lua_settop(L, 5);
    struct rill_worker *w = check_wait(L, "rill.publish"); /* before anything is sent */
    p.trace = publish_trace(w, p.topic);
    struct rill_frame_out blob = {0};
    if (backplane != &rill_hub_local) {
        blob_make(L, 5, &blob);
        if (blob.failed) {
            rill_frame_release(&blob);
            return luaL_error(L, "out of memory");
        }
        p.fields = (const char *)blob.p;
        p.fields_len = blob.len;
    }
    p.L = L;
    p.fields_idx = 5;
    struct pending *pd = pending_new(L, w); /* 6 */
    enum rill_bp_status st = backplane->publish(backplane, &p, on_answer, pd);
    rill_frame_release(&blob);
    lua_settop(L, 6);
    return await(L, pd, st, publish_k, "rill.publish", 0);
}
/*
 * hub.close(topic) → true, or nil, err, "limit" past max_topics: subscribers
 * drain what was published, then their streams end.
 */
static int hub_close(lua_State *L)
{
    const char *topic = luaL_checkstring(L, 1);
    luaL_argcheck(L, *topic, 1, "a topic name expected, got an empty string");
    lua_settop(L, 1);
    struct rill_worker *w = check_wait(L, "rill.close_topic");
    struct pending *pd = pending_new(L, w); /* 2 */
    enum rill_bp_status st = backplane->close_topic(backplane, L, topic, on_answer, pd);
    lua_settop(L, 2);
    return await(L, pd, st, close_k, "rill.close_topic", 1);
}

/* hub.disconnect(topic) → how many here: ends every subscriber's stream (they may resume), on every
 * worker. */
static int hub_disconnect(lua_State *L)
{
    const char *topic = luaL_checkstring(L, 1);
    backplane->disconnect(backplane, topic);
    lua_pushinteger(L, disconnect_all(topic));
    return 1;
}

/* ---- subscribe ------------------------------------------------------------------------- */

static void sub_unlink(struct subscription *s)
{
    struct topic *t = s->topic;
    if (!t)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->nsubs--;
    stats.subscribers--;
    s->topic = NULL;
    if (s->gz && t->gz && rill_gz_topic_leave(t->gz) == 0) {
        rill_gz_topic_free(t->gz); /* the last gzip'd one: its compressor goes */
        t->gz = NULL;
    }
    s->gz = NULL;
    maybe_free_topic(s->w->L, t, 0);
}

static void sub_close_res(struct rill_resource *res)
{
    struct subscription *s = (struct subscription *)res;
    free(s->resume);
    s->resume = NULL;
    s->req = NULL; /* its request may go now */
    sub_unlink(s);
    rill_waiter_clear(&s->wait);
}

/* __gc, __close, sub:close() */
static int sub_close(lua_State *L)
{
    struct subscription *s = luaL_checkudata(L, 1, SUB_MT);
    rill_resource_remove(&s->res);
    sub_close_res(&s->res);
    return 0;
}

/*
 * Where a subscriber with last_event_id resumes: right after that event when
 * the history still holds it; else after an in-band gap notice, from the
 * oldest event kept.
 */
static void resume_from(struct subscription *s, const char *last)
{
    struct topic *t = s->topic;
    if (t->ordered) {
        resume_ordered(s, last);
        return;
    }
    uint64_t first = t->count ? history_at(t, 0)->seq : t->last_seq + 1;
    char epoch[8] = "";
    unsigned long long seq = 0;
    int ours = sscanf(last, "%7[0-9a-z]-%llu", epoch, &seq) == 2 && strcmp(epoch, t->epoch) == 0;
    if (ours && seq + 1 >= first && seq <= t->last_seq) {
        s->cursor = seq; /* nothing it has not seen has left the history */
        return;
    }
    for (size_t i = 0; i < t->count; i++) { /* an id the publisher gave */
        if (strcmp(history_at(t, i)->id, last) == 0) {
            s->cursor = history_at(t, i)->seq;
            return;
        }
    }
    s->cursor = first - 1; /* replay what is kept, after telling the client */
    s->gap = ours && seq < first ? "expired" : "unknown";
}

/*
 * Pushes the in-band gap event {event = "rill-gap", data = reason}: the
 * client missed events ("expired": they left the history; "unknown": its
 * Last-Event-ID is not one of this topic's, e.g. from before a restart;
 * "dropped": it was too slow). The events the history still holds follow.
 */
static int push_gap(lua_State *L, struct subscription *s)
{
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "rill-gap");
    lua_setfield(L, -2, "event");
    lua_pushstring(L, s->gap);
    lua_setfield(L, -2, "data");
    s->gap = NULL;
    stats.gaps++;
    return 1;
}

/*
 * A subscriber too far behind: 1 when it is to be disconnected, else 0,
 * having moved it ahead after a gap notice if it was behind.
 */
static int overflowed(struct subscription *s)
{
    struct topic *t = s->topic;
    uint64_t first = t->count ? history_at(t, 0)->seq : t->last_seq + 1;
    int behind = s->cursor + 1 < first || t->last_seq - s->cursor > s->queue;
    if (!behind)
        return 0;
    stats.dropped++;
    if (!s->drop_oldest)
        return 1;
    uint64_t keep = t->last_seq - s->cursor > s->queue ? t->last_seq - s->queue : first - 1;
    s->cursor = keep > first - 1 ? keep : first - 1;
    s->gap = "dropped";
    return 0;
}

enum step {
    STEP_EVENT,   /* *e is the next event */
    STEP_GAP,     /* s->gap is a notice to deliver first */
    STEP_WAIT,    /* nothing yet */
    STEP_END,     /* the topic was closed and everything delivered */
    STEP_SLOW,    /* too far behind: disconnected */
    STEP_DROPPED, /* disconnected by hub.disconnect */
    STEP_CLOSED,  /* the subscription was closed */
};

/* What subscriber s gets next: one place for the Lua iterator and the C pump. */
static enum step sub_step(struct subscription *s, struct hub_event **e)
{
    if (s->dropped)
        return s->dropped == 2 ? STEP_SLOW : STEP_DROPPED;
    if (!s->topic)
        return STEP_CLOSED;
    struct topic *t = s->topic;
    if (s->resume) /* its topic is loading */
        return STEP_WAIT;
    if (overflowed(s))
        return STEP_SLOW;
    if (s->gap)
        return STEP_GAP;
    uint64_t first = t->count ? history_at(t, 0)->seq : t->last_seq + 1;
    if (s->cursor < t->last_seq) {
        *e = history_at(t, (size_t)(s->cursor + 1 - first));
        s->cursor = (*e)->seq;
        return STEP_EVENT;
    }
    return t->closed ? STEP_END : STEP_WAIT;
}

static int next_k(lua_State *L, int status, lua_KContext ctx)
{
    struct subscription *s = lua_touserdata(L, lua_upvalueindex(1)); /* ours: sub_next's upvalue */
    struct hub_event *e = NULL;
    (void)status, (void)ctx;
    switch (sub_step(s, &e)) {
    case STEP_EVENT:
        RILL_METRIC_ADD(hub_delivered, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->ud_ref);
        return 1;
    case STEP_GAP: return push_gap(L, s);
    case STEP_WAIT:
        return rill_waiter_park(L, &s->wait, next_k, "a hub subscription (rill.subscribe)");
    case STEP_END: return 0; /* drained: the stream ends */
    case STEP_SLOW:
        return luaL_error(L, "hub: subscriber of '%s' too slow, disconnected (it may resume)",
                          s->topic ? s->topic->name : "?");
    case STEP_DROPPED: return luaL_error(L, "hub: subscriber disconnected by the server");
    default: return luaL_error(L, "attempt to read a closed subscription");
    }
}

static int sub_next(lua_State *L)
{
    return next_k(L, LUA_OK, 0);
}

/* ---- the C pump ------------------------------------------------------------------- */

struct subscription *rill_hub_subscription(lua_State *L, int idx)
{
    if (lua_tocfunction(L, idx) != sub_next || !lua_getupvalue(L, idx, 1))
        return NULL;
    struct subscription *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

int rill_hub_pump(struct subscription *s, struct rill_task *owner, rill_pump_fn fn, void *arg)
{
    if (s->pump || s->res.owner != owner)
        return -1; /* pumped already, or another handler's: it stays with its loop */
    rill_resource_remove(&s->res); /* its task may end: the stream goes on */
    s->pump = fn;
    s->pump_arg = arg;
    rill_waiter_poke(&s->wait); /* the first turn, once the handler has returned */
    return 0;
}

int rill_hub_pump_gzip(struct subscription *s, struct rill_gzs *g)
{
    struct topic *t = s->topic;
    if (!t || s->gz)
        return -1;
    if (!t->gz && !(t->gz = rill_gz_topic_new()))
        return -1;
    rill_gz_topic_join(t->gz);
    s->gz = g;
    return 0;
}

void rill_hub_unpump(struct subscription *s)
{
    s->pump = NULL;
    s->pump_arg = NULL;
    sub_close_res(&s->res);
}

int rill_hub_sub_slow(const struct subscription *s)
{
    return s->dropped == 2;
}

/* A pumped subscriber the hub dropped (too slow, or hub.disconnect) is cut off; else it waits. */
enum rill_pump_result rill_hub_pump_check(struct subscription *s)
{
    if (!s->dropped)
        return RILL_PUMP_WAIT;
    if (s->dropped == 2)
        warn_slow(s);
    return RILL_PUMP_CUT;
}

/* The bytes rill.sse.encode gives {event = "rill-gap", data = reason}. */
static void add_gap(struct evbuffer *out, const char *reason)
{
    evbuffer_add_printf(out, "event: rill-gap\ndata: %s\n\n", reason);
    stats.gaps++;
}

/* Adds a reference to w's bytes to out. */
static void add_wire(struct evbuffer *out, struct wire *w)
{
    w->refs++;
    evbuffer_add_reference(out, w->bytes, w->len, wire_written, w);
}

/*
 * e for a gzip'd subscriber: its window's shared bytes when s has had
 * every event of that window (or e opens it), else e compressed alone
 * (made once, for every subscriber that needs it), and s leaves its
 * window until the next one opens. -1: out of memory.
 */
static int add_gz_event(struct subscription *s, struct hub_event *e, struct evbuffer *out)
{
    struct rill_gzs *g = s->gz;
    const unsigned char *bytes;
    size_t len;
    if (!e->crc_set) {
        e->crc = rill_gz_crc(e->wire->bytes, e->wire->len);
        e->crc_set = 1;
    }
    int follows = g->cohort && e->seq == g->next_seq && e->gz_window == g->window;
    if (e->gz && (e->gz_start || follows)) {
        add_wire(out, e->gz);
        g->cohort = 1;
        g->window = e->gz_window;
        g->next_seq = e->seq + 1;
    } else {
        if (!e->gz_alone) {
            if (rill_gz_alone(e->wire->bytes, e->wire->len, &bytes, &len) != 0 ||
                !(e->gz_alone = wire_of(bytes, len)))
                return -1;
            e->gz_bytes += len; /* the next publish's evict() sees it */
            stats.history_bytes += (long)len;
            stats.gz_alone++;
        }
        add_wire(out, e->gz_alone);
        g->cohort = 0;
    }
    rill_gzs_count(g, e->crc, e->wire->len);
    stats.gz_sent++;
    return 0;
}

/* A notice only s gets (add_gap's bytes), compressed alone: s leaves its window. */
static int add_gz_gap(struct subscription *s, struct evbuffer *out)
{
    char text[256];
    int n = snprintf(text, sizeof text, "event: rill-gap\ndata: %s\n\n", s->gap);
    if (n < 0 || (size_t)n >= sizeof text || rill_gzs_alone(s->gz, text, (size_t)n, out) != 0)
        return -1;
    stats.gaps++;
    return 0;
}

enum rill_pump_result rill_hub_pump_into(struct subscription *s, struct evbuffer *out, size_t limit)
{
    struct hub_event *e = NULL;
    while (evbuffer_get_length(out) < limit) {
        switch (sub_step(s, &e)) {
        case STEP_EVENT:
            RILL_METRIC_ADD(hub_delivered, 1);
            if (!s->gz)
                add_wire(out, e->wire);
            else if (add_gz_event(s, e, out) != 0)
                return RILL_PUMP_CUT; /* out of memory: it resumes with its last id */
            break;
        case STEP_GAP:
            if (!s->gz)
                add_gap(out, s->gap);
            else if (add_gz_gap(s, out) != 0)
                return RILL_PUMP_CUT;
            s->gap = NULL;
            break;
        case STEP_WAIT: return RILL_PUMP_WAIT;
        case STEP_END: return RILL_PUMP_END;
        case STEP_SLOW: s->dropped = 2; return rill_hub_pump_check(s);
        default: return RILL_PUMP_CUT;
        }
    }
    return RILL_PUMP_MORE;
}

/*
 * The overflow option of the options table at arg: 1 for "drop", 0 for
 * "disconnect", dflt when absent. Not luaL_checkoption on the field's copy:
 * that would name the stack slot ("bad argument #-1"), not the argument.
 */
static int opt_field_drop(lua_State *L, int arg, int dflt)
{
    int t = lua_getfield(L, arg, "overflow");
    const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int drop = dflt;
    if (s && strcmp(s, "drop") == 0) {
        drop = 1;
    } else if (s && strcmp(s, "disconnect") == 0) {
        drop = 0;
    } else if (t != LUA_TNIL) {
        const char *got = s ? lua_pushfstring(L, "'%s'", s) : luaL_typename(L, -1);
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "overflow: 'disconnect' or 'drop' expected, got %s", got));
    }
    lua_pop(L, 1);
    return drop;
}

/*
 * The last_event_id option of the options table at arg: a string (a number
 * counts, as Lua's own string arguments do), or NULL when absent. Its value
 * stays on the stack, which anchors the string a number converts to.
 */
static const char *opt_field_id(lua_State *L, int arg)
{
    int t = lua_getfield(L, arg, "last_event_id");
    if (t == LUA_TNIL)
        return NULL;
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(
            L, arg,
            lua_pushfstring(L, "last_event_id: string expected, got %s", luaL_typename(L, -1)));
    return lua_tostring(L, -1);
}

/*
 * hub.subscribe(topic, opts) → iterator, nil, nil, subscription; or nil,
 * err, "limit" past max_topics. opts: last_event_id, queue (events it may
 * lag), overflow ("disconnect" or "drop"). Every option is checked before
 * the topic or the subscription exists, so a bad one leaves nothing behind.
 */
static int hub_subscribe(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    size_t queue =
        (size_t)rill_opt_field_int(L, 2, "queue", (lua_Integer)config.queue, 1, MAX_COUNT);
    int drop_oldest = opt_field_drop(L, 2, config.drop_oldest);
    const char *last = opt_field_id(L, 2); /* its value at 3, nil when absent */
    struct rill_task *task = rill_task_check(L);
    /*
     * Everything that may run Lua (an allocation's GC step runs __gc, an
     * option's __index runs app code) comes before get_topic: such code may
     * close the last subscriber of the topic, which frees it.
     */
    struct subscription *s = lua_newuserdatauv(L, sizeof *s, 0);
    int ud = lua_gettop(L);
    memset(s, 0, sizeof *s);
    s->res.close = sub_close_res;
    s->w = task->w;
    rill_waiter_init(&s->wait, task->w->base, sub_unwaited);
    luaL_setmetatable(L, SUB_MT);
    s->queue = queue;
    s->drop_oldest = drop_oldest;
    s->req = task->owner_is_request ? (struct rill_request *)task : NULL;
    if (s->req) /* decided now, while its head is here: a C-fed stream lets go of it */
        (void)rill_request_id(s->req);
    if (backplane->load && !(s->resume = strdup(last ? last : "")))
        return luaL_error(L, "out of memory"); /* here: nothing is linked yet */
    struct topic *t = get_topic(L, name);
    if (!t)
        return push_too_many(L);

    trim(L, task->w, t);
    s->topic = t;
    s->cursor = t->last_seq;
    int load = backplane->load && (!t->loaded || newer_than_loaded(t, last));
    if (!load) {
        free(s->resume);
        s->resume = NULL;
        if (last && *last)
            resume_from(s, last);
    }
    s->next = t->subs;
    if (t->subs)
        t->subs->prev = s;
    t->subs = s;
    t->nsubs++;
    t->idle_since = 0;
    stats.subscribers++;
    rill_resource_add(task, &s->res);
    if (load)
        request_load(t); /* last: the backplane may deliver at once */

    lua_pushvalue(L, ud);
    return rill_push_iterator(L, sub_next, 1, ud);
}

/*
 * hub.configure{history=, history_bytes=, history_age=, queue=, overflow=,
 * max_topics=, total_history_bytes=}: every number checked (luanum.h). A
 * lower bound applies from the next publish or new topic on.
 */
static int hub_configure(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct hub_config c = config;
    c.history = (size_t)rill_opt_field_int(L, 1, "history", (lua_Integer)c.history, 1, MAX_COUNT);
    c.history_bytes = (size_t)rill_opt_field_int(L, 1, "history_bytes",
                                                 (lua_Integer)c.history_bytes, 1, MAX_BYTES);
    c.queue = (size_t)rill_opt_field_int(L, 1, "queue", (lua_Integer)c.queue, 1, MAX_COUNT);
    c.history_age =
        rill_opt_field_range(L, 1, "history_age", c.history_age, 0.001, RILL_MAX_SECONDS);
    c.max_topics =
        (size_t)rill_opt_field_int(L, 1, "max_topics", (lua_Integer)c.max_topics, 1, MAX_COUNT);
    c.total_bytes = (size_t)rill_opt_field_int(L, 1, "total_history_bytes",
                                               (lua_Integer)c.total_bytes, 1, MAX_BYTES);
    c.drop_oldest = opt_field_drop(L, 1, c.drop_oldest);
    config = c;
    struct rill_hub_bounds b = {c.history, c.history_bytes, c.history_age, c.max_topics,
                                c.total_bytes};
    backplane->configure(backplane, &b); /* the master's history keeps the same */
    return 0;
}

/*
 * hub.stats([topic]) → {topics, subscribers, published, dropped, gaps,
 * evicted, refused, history_bytes} or a topic's.
 */
static int hub_stats_fn(lua_State *L)
{
    int one_topic = !lua_isnoneornil(L, 1);
    struct topic *t = one_topic ? find_topic(luaL_checkstring(L, 1)) : NULL;
    lua_newtable(L);
    if (one_topic) {
        lua_pushinteger(L, t ? t->nsubs : 0);
        lua_setfield(L, -2, "subscribers");
        lua_pushinteger(L, t ? (lua_Integer)t->count : 0);
        lua_setfield(L, -2, "history");
        lua_pushinteger(L, t ? (lua_Integer)t->bytes : 0);
        lua_setfield(L, -2, "history_bytes");
        lua_pushboolean(L, t && t->closed);
        lua_setfield(L, -2, "closed");
        return 1;
    }
    const struct {
        const char *name;
        long value;
    } fields[] = {{"topics", stats.topics},       {"subscribers", stats.subscribers},
                  {"published", stats.published}, {"dropped", stats.dropped},
                  {"gaps", stats.gaps},           {"evicted", stats.evicted},
                  {"refused", stats.refused},     {"history_bytes", stats.history_bytes},
                  {"gz_shared", stats.gz_shared}, {"gz_alone", stats.gz_alone},
                  {"gz_sent", stats.gz_sent}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        lua_pushinteger(L, fields[i].value);
        lua_setfield(L, -2, fields[i].name);
    }
    lua_pushstring(L, backplane->name);
    lua_setfield(L, -2, "backplane");
    if (backplane->stats)
        backplane->stats(backplane, L);
    return 1;
}

void rill_hub_shutdown(lua_State *L)
{
    if (sweep)
        event_free(sweep);
    sweep = NULL;
    for (int b = 0; b < BUCKETS; b++) {
        while (buckets[b]) {
            struct topic *t = buckets[b];
            /* not sub_unlink: the last one would free t under this loop */
            for (struct subscription *s = t->subs; s; s = s->next) {
                s->topic = NULL; /* its request is freed later: it finds no topic */
                s->req = NULL;
                stats.subscribers--;
            }
            t->subs = NULL;
            forget_topic(L, t);
        }
    }
}

const struct hub_stats *rill_hub_stats(void)
{
    return &stats;
}

/* ---- the event object ---------------------------------------------------------------- */

static struct wire *check_event(lua_State *L, int idx);

static int event_index(lua_State *L)
{
    check_event(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

/* An event whose __gc ran (by hand: getmetatable(ev).__gc(ev)) raises when used. */
static struct wire *check_event(lua_State *L, int idx)
{
    struct wire **wp = luaL_checkudata(L, idx, EVENT_MT);
    if (!*wp)
        luaL_error(L, "attempt to use a closed hub event");
    return *wp;
}

static int event_tostring(lua_State *L)
{
    struct wire *w = check_event(L, 1);
    lua_pushlstring(L, w->bytes, w->len);
    return 1;
}

static int event_gc(lua_State *L)
{
    struct wire **wp = luaL_checkudata(L, 1, EVENT_MT);
    wire_unref(*wp);
    *wp = NULL;
    return 0;
}

static const luaL_Reg event_meta[] = {
    {"__index", event_index},
    {"__tostring", event_tostring},
    {"__gc", event_gc},
    {NULL, NULL},
};

static const luaL_Reg sub_meta[] = {
    {"__gc", sub_close},
    {"__close", sub_close},
    {NULL, NULL},
};

static const luaL_Reg hub_funcs[] = {
    {"publish", hub_publish},
    {"close", hub_close},
    {"disconnect", hub_disconnect},
    {"subscribe", hub_subscribe},
    {"configure", hub_configure},
    {"stats", hub_stats_fn},
    {NULL, NULL},
};

void rill_open_hub(lua_State *L)
{
    luaL_newmetatable(L, EVENT_MT);
    event_mt = lua_topointer(L, -1);
    luaL_setfuncs(L, event_meta, 0);
    lua_pop(L, 1);
    luaL_newmetatable(L, PENDING_MT);
    lua_pushcfunction(L, pending_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, SUB_MT);
    luaL_setfuncs(L, sub_meta, 0);
    lua_newtable(L);
    lua_pushcfunction(L, sub_close);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, hub_funcs);
    lua_setfield(L, -2, "hub");
}
