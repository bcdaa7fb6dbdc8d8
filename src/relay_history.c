/* SPDX-License-Identifier: MIT */
/*
 * The master-side hub history (relay_history.h): topics, their bounded
 * histories and the ids, with no subscriber, no Lua and no event loop.
 *
 * It owns one copy of every event the master relays; the workers' hubs hold
 * theirs. The two must keep the same events, so every bound here is hub.c's,
 * applied at the same moments and in the same order: publish appends, trims
 * its topic (count, bytes, age), then evicts globally (the oldest event of
 * any topic first, from one list in publish order); a new topic past
 * max_topics first forgets idle ones, then the closed one closed first. What
 * hub.c keeps alive for subscribers (an open topic with none left is idle
 * here at once) is the one difference, and the relay's to reconcile.
 *
 * It must never call out (no callback but foreach's) and never leave a
 * half-linked event or topic behind on out of memory.
 */
#include "relay_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FIRST_BUCKETS 64
#define FIRST_RING    16 /* a new topic's ring: its first event never needs to grow it */
#define GEN_ID_MAX    32 /* "<4-char epoch>-<uint64>" and its NUL */

const struct rill_history_config rill_history_defaults = {
    1000, 4 * 1024 * 1024, 3600, 10000, 64 * 1024 * 1024,
};

struct event {
    struct rill_history_event pub; /* its strings point into data and into the topic */
    struct topic *topic;
    struct event *older, *newer; /* every topic's events, in publish order */
    int pinned;                  /* being published: a drop parks it in limbo */
    char data[];                 /* id and NUL, wire, fields */
};

struct topic {
    char *name;
    uint64_t hash;
    struct topic *next_in_bucket;
    struct topic *prev_closed, *next_closed; /* the closed ones, in closing order */
    char epoch[8];
    uint64_t last_seq; /* of the newest event; 0 before the first */
    struct event **ring;
    size_t cap, head, count; /* history: count events from ring[head], oldest first */
    size_t bytes;            /* wire bytes of the history */
    uint64_t closed;         /* 0, or the order of its closing */
};

struct rill_history {
    struct rill_history_config cfg;
    struct topic **buckets;
    size_t nbuckets;
    uint64_t seed;          /* of the hash: buckets differ per run (FNV is no keyed hash) */
    unsigned long long rng; /* epochs */
    struct topic *first_closed, *last_closed; /* closing order */
    struct event *oldest, *newest;            /* the global publish order */
    struct event *limbo; /* the event just published when its own publish dropped it */
    uint64_t closings;   /* topics closed so far, to order them */
    double now;          /* of the latest publish or sweep: make_room's in close */
    struct rill_history_stats stats;
};

/* ---- helpers ---------------------------------------------------------------------- */

static uint64_t hash(const struct rill_history *h, const char *s)
{
    uint64_t v = 14695981039346656037ull ^ h->seed;
    for (; *s; s++)
        v = (v ^ (unsigned char)*s) * 1099511628211ull;
    return v ^ (v >> 29);
}

/* hub.c's new_epoch: 4 base36 digits from an LCG seeded by pid and time. */
static void new_epoch(struct rill_history *h, char *epoch)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    h->rng = h->rng * 6364136223846793005ull + 1442695040888963407ull;
    unsigned long long v = h->rng >> 16;
    for (int i = 0; i < 4; i++, v /= 36)
        epoch[i] = digits[v % 36];
    epoch[4] = '\0';
}

static struct event *history_at(const struct topic *t, size_t i)
{
    return t->ring[(t->head + i) % t->cap];
}

static size_t cost(const struct event *e)
{
    return e->pub.wire_len + RILL_HISTORY_EVENT_OVERHEAD;
}

/* The event a publish returned and dropped at once lives until the next change. */
static void flush_limbo(struct rill_history *h)
{
    free(h->limbo);
    h->limbo = NULL;
}

/* ---- events -------------------------------------------------------------------------- */

/* Unlinks the oldest event of t from its ring and the global order, and frees it. */
static void drop_oldest_event(struct rill_history *h, struct topic *t)
{
    struct event *e = history_at(t, 0);
    if (e->older)
        e->older->newer = e->newer;
    else
        h->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        h->newest = e->older;
    h->stats.bytes -= (long)cost(e);
    h->stats.events--;
    t->bytes -= e->pub.wire_len;
    t->head = (t->head + 1) % t->cap;
    t->count--;
    if (e->pinned)
        h->limbo = e; /* publish hands it out still */
    else
        free(e);
}

/* hub.c's trim: count, bytes and age, oldest first (an event at exactly now - age stays). */
static void trim(struct rill_history *h, struct topic *t, double now)
{
    double oldest = now - h->cfg.history_age;
    while (t->count > 0 && (t->count > h->cfg.history || t->bytes > h->cfg.history_bytes ||
                            history_at(t, 0)->pub.at < oldest))
        drop_oldest_event(h, t);
}

/*
 * hub.c's evict: the global budget, the oldest event overall first (always
 * the oldest of its topic). Topics left empty stay until the sweep or
 * make_room, as in hub.c.
 */
static void evict(struct rill_history *h)
{
    while (h->oldest && (size_t)h->stats.bytes > h->cfg.total_bytes) {
        drop_oldest_event(h, h->oldest->topic);
        h->stats.evicted++;
    }
}

/* Room in t's ring for one more event; -1 on out of memory, t unchanged. */
static int reserve(struct topic *t)
{
    if (t->count < t->cap)
        return 0;
    size_t cap = t->cap * 2;
    struct event **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -1;
    for (size_t i = 0; i < t->count; i++)
        ring[i] = history_at(t, i);
    free(t->ring);
    t->ring = ring;
    t->cap = cap;
    t->head = 0;
    return 0;
}

/* Appends e (room reserved) to t's history and the global order. */
static void push_event(struct rill_history *h, struct topic *t, struct event *e)
{
    t->ring[(t->head + t->count) % t->cap] = e;
    t->count++;
    t->bytes += e->pub.wire_len;
    e->topic = t;
    e->older = h->newest;
    e->newer = NULL;
    if (h->newest)
        h->newest->newer = e;
    else
        h->oldest = e;
    h->newest = e;
    h->stats.bytes += (long)cost(e);
    h->stats.events++;
    t->last_seq = e->pub.seq;
}

/* ---- topics ----------------------------------------------------------------------- */

static struct topic *find_topic(const struct rill_history *h, const char *name, uint64_t hv)
{
    for (struct topic *t = h->buckets[hv % h->nbuckets]; t; t = t->next_in_bucket)
        if (t->hash == hv && strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/*
 * Doubles the bucket array once there are more topics than buckets, so a
 * lookup stays O(1) at any max_topics. Out of memory keeps the old array:
 * slower, still correct.
 */
static void maybe_grow(struct rill_history *h)
{
    if ((size_t)h->stats.topics <= h->nbuckets)
        return;
    size_t n = h->nbuckets * 2;
    struct topic **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        for (struct topic *t = h->buckets[i], *next; t; t = next) {
            next = t->next_in_bucket;
            t->next_in_bucket = b[t->hash % n];
            b[t->hash % n] = t;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
}

static void unlink_closed(struct rill_history *h, struct topic *t)
{
    if (!t->closed)
        return;
    if (t->prev_closed)
        t->prev_closed->next_closed = t->next_closed;
    else
        h->first_closed = t->next_closed;
    if (t->next_closed)
        t->next_closed->prev_closed = t->prev_closed;
    else
        h->last_closed = t->prev_closed;
}

/* Unlinks t from its bucket (and the closed list) and frees it, with what history it has. */
static void forget_topic(struct rill_history *h, struct topic *t)
{
    struct topic **p = &h->buckets[t->hash % h->nbuckets];
    while (*p != t)
        p = &(*p)->next_in_bucket;
    *p = t->next_in_bucket;
    unlink_closed(h, t);
    while (t->count > 0)
        drop_oldest_event(h, t);
    free(t->ring);
    free(t->name);
    free(t);
    h->stats.topics--;
}

/* hub.c's maybe_free_topic with no subscriber: an open topic with no history goes. */
static void maybe_forget(struct rill_history *h, struct topic *t)
{
    if (t->count == 0 && !t->closed)
        forget_topic(h, t);
}

/* hub.c's on_sweep and the first half of make_room: trim every topic, forget the idle. */
static void sweep_all(struct rill_history *h, double now)
{
    for (size_t b = 0; b < h->nbuckets; b++) {
        for (struct topic *t = h->buckets[b], *next; t; t = next) {
            next = t->next_in_bucket;
            trim(h, t, now);
            maybe_forget(h, t);
        }
    }
}

/*
 * hub.c's make_room, at max_topics: forgets the idle topics, and if that is
 * not enough, the closed topic with no history left that was closed first
 * (the closed list is in closing order: the first empty one). Returns
 * whether there is room now. O(topics), as in hub.c, but only for a new
 * topic at the bound.
 */
static int make_room(struct rill_history *h)
{
    sweep_all(h, h->now);
    if ((size_t)h->stats.topics < h->cfg.max_topics)
        return 1;
    struct topic *t = h->first_closed;
    while (t && t->count)
        t = t->next_closed;
    if (t)
        forget_topic(h, t);
    return t != NULL;
}

/* A new open topic with a fresh epoch and a ring for its first events; NULL on out of memory. */
static struct topic *topic_new(struct rill_history *h, const char *name, uint64_t hv)
{
    struct topic *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = strdup(name);
    t->ring = malloc(FIRST_RING * sizeof *t->ring);
    if (!t->name || !t->ring) {
        free(t->name);
        free(t->ring);
        free(t);
        return NULL;
    }
    t->cap = FIRST_RING;
    t->hash = hv;
    new_epoch(h, t->epoch);
    return t;
}

/*
 * The topic, created on first use (hub.c's get_topic): LIMIT, counted in
 * refused, past max_topics when make_room finds no room.
 */
static enum rill_history_result get_topic(struct rill_history *h, const char *name,
                                          struct topic **out)
{
    uint64_t hv = hash(h, name);
    struct topic *t = find_topic(h, name, hv);
    if (!t) {
        if ((size_t)h->stats.topics >= h->cfg.max_topics && !make_room(h)) {
            h->stats.refused++;
            return RILL_HISTORY_LIMIT;
        }
        if (!(t = topic_new(h, name, hv)))
            return RILL_HISTORY_NOMEM;
        t->next_in_bucket = h->buckets[hv % h->nbuckets];
        h->buckets[hv % h->nbuckets] = t;
        h->stats.topics++;
        maybe_grow(h);
    }
    *out = t;
    return RILL_HISTORY_OK;
}

/* ---- the store ---------------------------------------------------------------------- */

struct rill_history *rill_history_new(const struct rill_history_config *cfg)
{
    struct rill_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->buckets = calloc(FIRST_BUCKETS, sizeof *h->buckets);
    if (!h->buckets) {
        free(h);
        return NULL;
    }
    h->nbuckets = FIRST_BUCKETS;
    h->cfg = cfg ? *cfg : rill_history_defaults;
    h->rng = (unsigned long long)getpid() * 2654435761u ^ (unsigned long long)time(NULL);
    h->seed = h->rng * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)h;
    return h;
}

void rill_history_free(struct rill_history *h)
{
    if (!h)
        return;
    for (size_t b = 0; b < h->nbuckets; b++)
        while (h->buckets[b])
            forget_topic(h, h->buckets[b]);
    flush_limbo(h);
    free(h->buckets);
    free(h);
}

void rill_history_configure(struct rill_history *h, const struct rill_history_config *cfg)
{
    flush_limbo(h);
    h->cfg = cfg ? *cfg : rill_history_defaults;
}

/* What rill.sse.encode accepts as an id, within hub.c's bound. */
static int id_ok(const char *id, size_t len)
{
    return len <= RILL_HISTORY_MAX_ID && !memchr(id, '\r', len) && !memchr(id, '\n', len) &&
           !memchr(id, '\0', len);
}

/*
 * The event's one block, sized before the topic is looked up (a generated
 * id is at most GEN_ID_MAX - 1 bytes), so that out of memory changes nothing.
 */
static struct event *event_alloc(size_t id_cap, size_t prefix_len, size_t suffix_len,
                                 size_t fields_len)
{
    size_t n = sizeof(struct event),
           parts[] = {id_cap + 1, prefix_len, 5 + id_cap, suffix_len, fields_len};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i] > SIZE_MAX - n)
            return NULL;
        n += parts[i];
    }
    return malloc(n);
}

/* memcpy that takes NULL with length 0 (an absent prefix or fields); returns the end. */
static char *put(char *to, const char *from, size_t len)
{
    if (len)
        memcpy(to, from, len);
    return to + len;
}

/* Fills e for topic t: its id (given or "<epoch>-<seq>"), wire and fields. */
static void event_fill(struct event *e, struct topic *t, const char *id, size_t id_len,
                       const char *prefix, size_t prefix_len, const char *suffix, size_t suffix_len,
                       const char *fields, size_t fields_len, double now)
{
    char *p = e->data;
    e->pinned = 0;
    e->pub.topic = t->name;
    e->pub.epoch = t->epoch;
    e->pub.seq = t->last_seq + 1;
    e->pub.at = now;
    if (id)
        memcpy(p, id, id_len);
    else
        id_len =
            (size_t)snprintf(p, GEN_ID_MAX, "%s-%llu", t->epoch, (unsigned long long)e->pub.seq);
    p[id_len] = '\0';
    e->pub.id = p;
    e->pub.id_len = id_len;
    char *w = p + id_len + 1;
    e->pub.wire = w;
    w = put(w, prefix, prefix_len);
    w = put(w, "id: ", 4);
    w = put(w, e->pub.id, id_len);
    w = put(w, "\n", 1);
    w = put(w, suffix, suffix_len);
    e->pub.wire_len = (size_t)(w - e->pub.wire);
    e->pub.fields = w;
    e->pub.fields_len = fields_len;
    put(w, fields, fields_len);
}

/*
 * hub.c's hub.publish: the id is checked before the topic exists (hub.c
 * raises there), then get_topic, then closed; append, trim the topic, evict
 * globally. The event is pinned meanwhile, so *out holds even if it was
 * dropped at once.
 */
enum rill_history_result rill_history_publish(struct rill_history *h, const char *topic,
                                              const char *id, size_t id_len, const char *prefix,
                                              size_t prefix_len, const char *suffix,
                                              size_t suffix_len, const char *fields,
                                              size_t fields_len, double now,
                                              const struct rill_history_event **out)
{
    flush_limbo(h);
    h->now = now;
    if (id && !id_ok(id, id_len))
        return RILL_HISTORY_BADID;
    struct event *e = event_alloc(id ? id_len : GEN_ID_MAX, prefix_len, suffix_len, fields_len);
    if (!e)
        return RILL_HISTORY_NOMEM;
    struct topic *t = NULL;
    enum rill_history_result r = get_topic(h, topic, &t);
    if (r == RILL_HISTORY_OK && t->closed)
        r = RILL_HISTORY_CLOSED;
    if (r == RILL_HISTORY_OK && reserve(t) != 0)
        r = RILL_HISTORY_NOMEM; /* an existing topic: a new one has room for its first */
    if (r != RILL_HISTORY_OK) {
        free(e);
        return r;
    }
    event_fill(e, t, id, id_len, prefix, prefix_len, suffix, suffix_len, fields, fields_len, now);
    push_event(h, t, e);
    e->pinned = 1;
    trim(h, t, now);
    evict(h);
    e->pinned = 0;
    *out = &e->pub;
    return RILL_HISTORY_OK;
}

/* hub.c's hub.close: remembered as closed, in closing order, until make_room needs the place. */
enum rill_history_result rill_history_close(struct rill_history *h, const char *topic)
{
    flush_limbo(h);
    struct topic *t = NULL;
    enum rill_history_result r = get_topic(h, topic, &t);
    if (r != RILL_HISTORY_OK || t->closed)
        return r;
    t->closed = ++h->closings;
    t->prev_closed = h->last_closed;
    if (h->last_closed)
        h->last_closed->next_closed = t;
    else
        h->first_closed = t;
    h->last_closed = t;
    return RILL_HISTORY_OK;
}

void rill_history_sweep(struct rill_history *h, double now)
{
    flush_limbo(h);
    h->now = now;
    sweep_all(h, now);
}

/* ---- snapshot and stats ----------------------------------------------------------------- */

static void visit(const struct topic *t, rill_history_topic_fn topic_fn,
                  rill_history_event_fn event_fn, void *arg)
{
    if (topic_fn)
        topic_fn(arg, t->name, t->epoch, t->last_seq,
                 t->count ? history_at(t, 0)->pub.seq : t->last_seq + 1, t->closed != 0);
    for (size_t i = 0; event_fn && i < t->count; i++)
        event_fn(arg, &history_at(t, i)->pub);
}

void rill_history_foreach(const struct rill_history *h, rill_history_topic_fn topic_fn,
                          rill_history_event_fn event_fn, void *arg)
{
    for (const struct topic *t = h->first_closed; t; t = t->next_closed)
        visit(t, topic_fn, event_fn, arg);
    for (size_t b = 0; b < h->nbuckets; b++)
        for (const struct topic *t = h->buckets[b]; t; t = t->next_in_bucket)
            if (!t->closed)
                visit(t, topic_fn, event_fn, arg);
}

void rill_history_foreach_event(const struct rill_history *h, rill_history_event_fn event_fn,
                                void *arg)
{
    for (const struct event *e = h->oldest; e; e = e->newer)
        event_fn(arg, &e->pub);
}

size_t rill_history_max_topics(const struct rill_history *h)
{
    return h->cfg.max_topics;
}

void rill_history_stats(const struct rill_history *h, struct rill_history_stats *out)
{
    *out = h->stats;
}
