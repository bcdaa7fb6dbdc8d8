/* SPDX-License-Identifier: MIT */
#ifndef RILL_HUB_H
#define RILL_HUB_H
#include <event2/buffer.h>
#include <lua.h>

struct hub_stats {
    long topics, subscribers, published, dropped, gaps;
    long evicted;       /* events dropped for the global budget (total_history_bytes) */
    long refused;       /* new topics refused past max_topics */
    long history_bytes; /* what all histories cost the global budget */
    long gz_shared; /* events compressed once in their topic's window, for all gzip'd subscribers */
    long gz_alone;  /* events compressed alone, for gzip'd subscribers out of their window */
    long gz_sent;   /* events sent compressed, shared or alone */
};

/*
 * If the value at idx is a published hub event, queues its encoded bytes on
 * out by reference (no copy) and returns 1; else 0.
 */
int rill_hub_write(struct evbuffer *out, lua_State *L, int idx);
const struct hub_stats *rill_hub_stats(void);

/*
 * The C pump: a stream whose body is a bare subscription (rill.sse of
 * rill.subscribe) is fed from C once its handler returns, with no coroutine
 * kept for it. rill_hub_subscription gives the subscription behind such an
 * iterator (NULL for any other value); rill_hub_pump hands it to fn, called
 * on the next loop turn and then whenever it may have something (an event, a
 * close, a drop); pump_into appends what there is to out, up to about limit
 * bytes.
 */
struct subscription;
typedef void (*rill_pump_fn)(void *arg);
enum rill_pump_result {
    RILL_PUMP_WAIT, /* all written; fn is called when there is more */
    RILL_PUMP_MORE, /* stopped at the limit */
    RILL_PUMP_END,  /* the topic closed: the stream ends cleanly */
    RILL_PUMP_CUT,  /* disconnected (too slow, or hub.disconnect): cut the stream */
};
struct subscription *rill_hub_subscription(lua_State *L, int idx);
struct rill_task;
/* -1 (nothing changes) when s is pumped already or is not owner's own subscription. */
int rill_hub_pump(struct subscription *s, struct rill_task *owner, rill_pump_fn fn, void *arg);
void rill_hub_unpump(struct subscription *s);
struct rill_gzs;
/*
 * The pumped s is gzip'd: its events come compressed, shared with its
 * topic's other gzip'd subscribers (compress.h), g counting what it was
 * sent. -1: out of memory (s stays plain).
 */
int rill_hub_pump_gzip(struct subscription *s, struct rill_gzs *g);
enum rill_pump_result rill_hub_pump_into(struct subscription *s, struct evbuffer *out,
                                         size_t limit);
/* For a pump waiting on its client: RILL_PUMP_CUT if the hub dropped it meanwhile, else WAIT. */
enum rill_pump_result rill_hub_pump_check(struct subscription *s);
/* Whether the hub dropped s for being too slow (its queue policy), not by hub.disconnect. */
int rill_hub_sub_slow(const struct subscription *s);

#endif
