/* SPDX-License-Identifier: MIT */
#ifndef RILL_TIMEDQ_H
#define RILL_TIMEDQ_H
#include <event2/event.h>
#include <stddef.h>
#include <sys/time.h>

/*
 * A timed queue: items in the order they were last stamped, with one timer
 * for the oldest. Stamping an item is two pointer moves, where a timer per
 * item costs a timer-heap operation each time it is re-armed (evhttp's
 * timeouts did, on every read and write). For timeouts that are the same
 * for every item of a queue: connections' deadlines and inactivity
 * (conn.c), streams' heartbeats (response.c). Time is the coarse monotonic
 * clock: a wall-clock step must not fire everyone at once, and a few
 * milliseconds are nothing against timeouts in seconds.
 *
 * Intrusive: an item embeds a struct rill_tq_link at offset `link`.
 */
struct rill_tq_link {
    void *prev, *next; /* items */
    struct timeval at; /* stamped */
    unsigned queued : 1;
};

struct rill_tq {
    void *oldest, *newest;
    struct event *ev;
    struct timeval span; /* how long one may wait; 0: the queue is off */
    size_t link;         /* offsetof the rill_tq_link in an item */
};

/* fire(arg) runs when the oldest item's span is up; it takes what rill_tq_due gives. */
void rill_tq_init(struct rill_tq *q, struct event_base *base, event_callback_fn fire, void *arg,
                  double seconds, size_t link);
void rill_tq_free(struct rill_tq *q);
/* Stamps item now and puts it at the back (taking it out first if it was in). */
void rill_tq_append(struct rill_tq *q, void *item);
void rill_tq_remove(struct rill_tq *q, void *item);
/* The oldest item whose span is up at now, or NULL. */
void *rill_tq_due(const struct rill_tq *q, const struct timeval *now);
/* Sets the timer for the oldest item (after fire took the due ones). */
void rill_tq_arm(struct rill_tq *q);
void rill_tq_now(struct timeval *tv);
/* seconds (finite) as a timeval; 0 or less: zero, which means "off". */
void rill_tq_timeval(double seconds, struct timeval *tv);

#endif
