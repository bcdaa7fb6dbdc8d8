/* SPDX-License-Identifier: MIT */
/* Timed queues (timedq.h): intrusive FIFOs of stamped items, one timer each. */
#include "timedq.h"

#include <time.h>

static struct rill_tq_link *link_of(const struct rill_tq *q, void *item)
{
    return (struct rill_tq_link *)((char *)item + q->link);
}

void rill_tq_now(struct timeval *tv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
}

void rill_tq_timeval(double seconds, struct timeval *tv)
{
    tv->tv_sec = 0;
    tv->tv_usec = 0;
    if (seconds > 0) {
        tv->tv_sec = (time_t)seconds;
        tv->tv_usec = (suseconds_t)((seconds - (double)tv->tv_sec) * 1e6);
    }
}

void rill_tq_init(struct rill_tq *q, struct event_base *base, event_callback_fn fire, void *arg,
                  double seconds, size_t link)
{
    q->oldest = q->newest = NULL;
    q->ev = evtimer_new(base, fire, arg);
    q->link = link;
    rill_tq_timeval(seconds, &q->span);
}

void rill_tq_free(struct rill_tq *q)
{
    if (q->ev)
        event_free(q->ev);
    q->ev = NULL;
}

void rill_tq_remove(struct rill_tq *q, void *item)
{
    struct rill_tq_link *l = link_of(q, item);
    if (!l->queued)
        return;
    l->queued = 0;
    if (l->prev)
        link_of(q, l->prev)->next = l->next;
    else
        q->oldest = l->next;
    if (l->next)
        link_of(q, l->next)->prev = l->prev;
    else
        q->newest = l->prev;
    l->prev = l->next = NULL;
}

void rill_tq_arm(struct rill_tq *q)
{
    struct timeval now, due, wait = {0, 0};
    if (!q->oldest || !q->ev)
        return;
    rill_tq_now(&now);
    timeradd(&link_of(q, q->oldest)->at, &q->span, &due);
    if (timercmp(&due, &now, >))
        timersub(&due, &now, &wait);
    event_add(q->ev, &wait);
}

void rill_tq_append(struct rill_tq *q, void *item)
{
    struct rill_tq_link *l = link_of(q, item);
    rill_tq_remove(q, item);
    rill_tq_now(&l->at);
    l->queued = 1;
    l->prev = q->newest;
    l->next = NULL;
    if (q->newest)
        link_of(q, q->newest)->next = item;
    else
        q->oldest = item;
    q->newest = item;
    if (q->ev && !event_pending(q->ev, EV_TIMEOUT, NULL))
        rill_tq_arm(q); /* else it fires for an older one first, and is armed again then */
}

void *rill_tq_due(const struct rill_tq *q, const struct timeval *now)
{
    struct timeval due;
    if (!q->oldest)
        return NULL;
    timeradd(&link_of(q, q->oldest)->at, &q->span, &due);
    return timercmp(&due, now, >) ? NULL : q->oldest;
}
