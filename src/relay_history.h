/* SPDX-License-Identifier: MIT */
#ifndef RILL_RELAY_HISTORY_H
#define RILL_RELAY_HISTORY_H
#include <stddef.h>
#include <stdint.h>

/*
 * The master's copy of the hub history (no Lua, no libevent). With several
 * workers the master owns the authoritative history and every worker mirrors
 * it from the ordered stream of events it sends; this store bounds memory by
 * exactly the rules of src/hub.c (per topic: count, bytes, age; globally:
 * total bytes, oldest event first; max_topics), so a worker's hub that
 * applies the same events in the same order with the same timestamps keeps
 * the same events, and a client resuming with Last-Event-ID on any worker
 * gets the same answer.
 */

#define RILL_HISTORY_EVENT_OVERHEAD 256 /* must equal hub.c's EVENT_OVERHEAD */
#define RILL_HISTORY_MAX_ID         128 /* the longest id a publisher may give */

struct rill_history_config {
    size_t history;       /* events kept per topic (default 1000) */
    size_t history_bytes; /* wire bytes kept per topic (default 4 MiB) */
    double history_age;   /* seconds an event is kept (default 3600) */
    size_t max_topics;    /* topics at most, closed ones included (default 10000) */
    size_t total_bytes;   /* all topics, overhead included (default 64 MiB) */
};

extern const struct rill_history_config rill_history_defaults;

struct rill_history_event {
    const char *topic; /* NUL-terminated */
    const char *epoch; /* its topic's epoch, NUL-terminated */
    uint64_t seq;
    const char *id;
    size_t id_len; /* NUL-terminated too */
    const char *wire;
    size_t wire_len;
    const char *fields;
    size_t fields_len; /* opaque bytes the caller stores with the event */
    double at;         /* publish time, seconds (the caller's clock) */
};

enum rill_history_result {
    RILL_HISTORY_OK,
    RILL_HISTORY_CLOSED,
    RILL_HISTORY_LIMIT,
    RILL_HISTORY_BADID,
    RILL_HISTORY_NOMEM
};

struct rill_history;

/* NULL on out of memory; cfg NULL: rill_history_defaults. */
struct rill_history *rill_history_new(const struct rill_history_config *cfg);
void rill_history_free(struct rill_history *h);
/* Lower bounds apply from the next publish (or new topic) on, as hub.configure. */
void rill_history_configure(struct rill_history *h, const struct rill_history_config *cfg);
size_t rill_history_max_topics(const struct rill_history *h);

/*
 * Appends an event to topic (created on first use). id NULL: generated,
 * "<epoch>-<seq>"; else at most RILL_HISTORY_MAX_ID bytes with no CR, LF or
 * NUL (what rill.sse.encode accepts), else BADID. The wire block stored is
 * prefix + "id: " + id + "\n" + suffix. On OK, *out is the event, valid until
 * the next call that changes h, even when the bounds dropped it at once (an
 * event larger than history_bytes): workers must still be sent it.
 */
enum rill_history_result rill_history_publish(struct rill_history *h, const char *topic,
                                              const char *id, size_t id_len, const char *prefix,
                                              size_t prefix_len, const char *suffix,
                                              size_t suffix_len, const char *fields,
                                              size_t fields_len, double now,
                                              const struct rill_history_event **out);

/* Marks the topic closed (creating it if needed, LIMIT past max_topics). Idempotent. */
enum rill_history_result rill_history_close(struct rill_history *h, const char *topic);

/* Every 10 s from the master: ages history out of topics nobody publishes to, forgets idle open
 * topics. */
void rill_history_sweep(struct rill_history *h, double now);

/*
 * The snapshot a (re)started worker gets: for each topic, topic_fn(arg,
 * name, epoch, last_seq, closed), then event_fn for each of its events,
 * oldest first. last_seq is the seq of its newest event ever (0 before the
 * first), also when the history is empty; first_seq that of its oldest
 * event kept (last_seq + 1 when none is). Closed topics come first, in the
 * order they were closed (the order make_room forgets them in), then the open
 * ones. Either callback may be NULL.
 */
typedef void (*rill_history_topic_fn)(void *arg, const char *name, const char *epoch,
                                      uint64_t last_seq, uint64_t first_seq, int closed);
typedef void (*rill_history_event_fn)(void *arg, const struct rill_history_event *e);
void rill_history_foreach(const struct rill_history *h, rill_history_topic_fn topic_fn,
                          rill_history_event_fn event_fn, void *arg);

/*
 * Every event of every topic in publish order, oldest first: the order the
 * global budget evicts in. A worker rebuilding its hub from a snapshot needs
 * this order (foreach with event_fn NULL for the topics, then this), else its
 * global eviction would later pick other events than the master's.
 */
void rill_history_foreach_event(const struct rill_history *h, rill_history_event_fn event_fn,
                                void *arg);

struct rill_history_stats {
    long topics, events, bytes /* budget bytes, overhead included */, evicted, refused;
};
void rill_history_stats(const struct rill_history *h, struct rill_history_stats *out);

#endif
