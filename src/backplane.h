/* SPDX-License-Identifier: MIT */
#ifndef RILL_BACKPLANE_H
#define RILL_BACKPLANE_H
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The hub's backplane: who orders the events of a topic and assigns their
 * ids. The hub (hub.c) keeps topics, history and subscribers; it hands each
 * publish to the backplane, and the backplane delivers events back to it in
 * its one order per topic (rill_hub_deliver...), the publisher's own
 * included. Implementations: in-process (one worker, no hop),
 * the master relay (hub_relay.c: several workers, the master assigns), and
 * Redis Streams later. hub.c does not know which one runs.
 */

struct rill_hub_bounds {
    size_t history, history_bytes; /* per topic: events, wire bytes */
    double history_age;            /* seconds */
    size_t max_topics, total_bytes;
};

/* A publish on its way to the backplane. */
struct rill_publish {
    const char *topic;
    const char *id; /* the publisher's id, or NULL: the backplane assigns "<epoch>-<seq>" */
    size_t id_len;
    const char *prefix, *suffix; /* the encoded block around its id line (sse_encode_parts) */
    size_t prefix_len, suffix_len;
    const char *fields; /* event, data, retry as rill_hub_fields_push reads them back */
    size_t fields_len;
    lua_State *L;   /* for a backplane that delivers at once: */
    int fields_idx; /* the fields table the subscribers read */
    const char
        *trace; /* the publishing request's trace id, carried with --log-level debug; or NULL */
};

/* The outcome of a publish or close: id (a publish) or true, or err and a code ("limit"). */
struct rill_backplane_reply {
    const char *id;
    const char *err, *code;
};
typedef void (*rill_backplane_done)(void *arg, const struct rill_backplane_reply *reply);

enum rill_bp_status {
    RILL_BP_DONE,    /* done was called before the call returned */
    RILL_BP_PENDING, /* done is called later, once the backplane delivered or refused it */
    RILL_BP_GONE,    /* the backplane is gone (the master died): nothing was sent */
};

struct rill_backplane {
    const char *name;
    enum rill_bp_status (*publish)(struct rill_backplane *bp, const struct rill_publish *p,
                                   rill_backplane_done done, void *arg);
    enum rill_bp_status (*close_topic)(struct rill_backplane *bp, lua_State *L, const char *topic,
                                       rill_backplane_done done, void *arg);
    /* hub.disconnect on the other workers too (the local one is done by the hub) */
    void (*disconnect)(struct rill_backplane *bp, const char *topic);
    void (*configure)(struct rill_backplane *bp, const struct rill_hub_bounds *b);
    /* arg's waiter is gone: its done must never be called */
    void (*forget)(struct rill_backplane *bp, void *arg);
    /*
     * For a backplane that delivers only the topics followed here (Redis),
     * else NULL. load: a topic gets a subscriber here and is not loaded, or
     * a subscriber's Last-Event-ID is newer than what was delivered: the
     * backplane delivers what it has (rill_hub_deliver_reset the first
     * time, then events) and then rill_hub_deliver_loaded, once it can
     * (its store may be down: subscribers wait). unfollow: the hub forgot
     * the topic (no subscriber left); nothing more is delivered for it.
     */
    void (*load)(struct rill_backplane *bp, const char *topic);
    void (*unfollow)(struct rill_backplane *bp, const char *topic);
    /* Adds the backplane's own figures to the hub.stats() table on the top of L, or NULL. */
    void (*stats)(struct rill_backplane *bp, lua_State *L);
};

/* The in-process backplane (in hub.c: it is the hub's own order), the default. */
extern struct rill_backplane rill_hub_local;
/* Which backplane the hub uses from now on (NULL: in-process). */
void rill_hub_use(struct rill_backplane *bp);

/* An event as the backplane delivers it, in its order. */
struct rill_hub_delivery {
    const char *topic;
    const char *epoch; /* of the topic's incarnation: ids are "<epoch>-<seq>" */
    uint64_t seq;
    const char *id;
    size_t id_len;
    const char *wire; /* the encoded block, id line included */
    size_t wire_len;
    double at;         /* publish time, seconds since 1970 */
    const char *trace; /* its publisher's trace id, or NULL (not carried, or not a request's) */
};

/*
 * Applies ev (its fields table on the top of L's stack, popped). A gap in
 * seq or a new epoch (the backplane forgot the topic meanwhile) restarts
 * the topic's history there. -1 when the hub had no room for a new topic
 * (max_topics). May raise (memory): call it protected.
 */
int rill_hub_deliver(lua_State *L, const struct rill_hub_delivery *ev);
/* A snapshot's topic: where its history starts (events follow), and whether it is closed. */
int rill_hub_deliver_topic(lua_State *L, const char *name, const char *epoch, uint64_t last_seq,
                           int closed);
int rill_hub_deliver_close(lua_State *L, const char *name);
void rill_hub_deliver_disconnect(const char *name);

/*
 * For a followed topic whose ids are ordered stream ids ("<ms>-<seq>",
 * Redis): its history restarts (epoch), and what is at or before floor
 * (NULL: nothing known before the first event) left it; strict: floor
 * itself too (the store lost the topic: ids up to floor are of an
 * incarnation that is gone), and every subscriber is told it may have
 * missed events. Events follow with rill_hub_deliver.
 */
int rill_hub_deliver_reset(lua_State *L, const char *name, const char *epoch, const char *floor,
                           int strict);
/* A load is over: the topic's waiting subscribers find where they resume, and are woken. */
void rill_hub_deliver_loaded(lua_State *L, const char *name);
/*
 * Events of an ordered topic were lost before they reached this process
 * (trimmed before it read them): every subscriber is told (rill-gap
 * expired), and a resume from before floor gets the gap too.
 */
void rill_hub_deliver_lost(lua_State *L, const char *name, const uint64_t floor[2]);
/* The topic is not loaded any more (its store could not be read): a later subscriber loads it. */
void rill_hub_deliver_unloaded(lua_State *L, const char *name);
/* Parses a stream id "<ms>-<seq>" (1 to 20 digits each, each at most 2^64-1) into id; 0 if not one.
 */
int rill_stream_id_parse(const char *s, size_t len, uint64_t id[2]);
int rill_stream_id_cmp(const uint64_t a[2], const uint64_t b[2]);

/* The hub's bounds now (hub.configure), for a backplane that keeps history too. */
void rill_hub_bounds(struct rill_hub_bounds *b);
/* "hub: too many topics (max_topics = N)" */
const char *rill_hub_too_many(lua_State *L);

/* The fields blob of rill_publish: pushes the table {event=, data=, retry=, id=}. */
void rill_hub_fields_push(lua_State *L, const char *blob, size_t len, const char *id,
                          size_t id_len);

#endif
