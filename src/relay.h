/* SPDX-License-Identifier: MIT */
#ifndef RILL_RELAY_H
#define RILL_RELAY_H
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "relay_history.h"

/*
 * The master's end of the relay (notes/scale.md §3): one channel per
 * worker, the authoritative history (relay_history.c), and the one order:
 * a worker's PUB gets its id here and goes out as EV to every worker, its
 * publisher included. A (re)started worker is sent the snapshot first.
 * The master's other business (processes, signals) comes through hooks.
 */

struct rill_relay;
struct rill_relay_peer;

struct rill_relay_hooks {
    void (*ready)(void *arg, void *owner);                   /* READY */
    void (*draining)(void *arg, void *owner);                /* DRAINING: it stopped accepting */
    void (*failed)(void *arg, void *owner, const char *msg); /* FAILED: the app did not load */
    void (*files)(void *arg, void *owner, const char *const *paths, size_t n);
    /* CONFIG: the hub's bounds in that worker; the master decides whose to keep */
    void (*config)(void *arg, void *owner, const struct rill_history_config *cfg);
    void (*lost)(void *arg, void *owner,
                 int broken);                 /* the channel closed (broken: by us, a bad frame) */
    void (*overflow)(void *arg, void *owner); /* its queue passed the bound: it is stuck */
    void *arg;
};

struct rill_relay *rill_relay_new(struct event_base *base, size_t max_queue,
                                  const struct rill_relay_hooks *hooks);
/* A worker's channel (fd: the master's end); the snapshot is queued at once. */
struct rill_relay_peer *rill_relay_add(struct rill_relay *r, int fd, uint64_t pid, void *owner);
void rill_relay_accept(struct rill_relay_peer *p);
/* The bounds the master's history keeps from now on. */
void rill_relay_configure(struct rill_relay *r, const struct rill_history_config *cfg);
void rill_relay_drain(struct rill_relay_peer *p, double seconds);
/* The worker holds the lead (runs the `once` background tasks), or no longer. */
void rill_relay_lead(struct rill_relay_peer *p, int lead);
/*
 * Handles what the worker wrote before it exited (its FAILED, say), which
 * its SIGCHLD may have overtaken.
 */
void rill_relay_read_now(struct rill_relay_peer *p);
/* In a child after fork: closes every channel's descriptor (its copy), at once. */
void rill_relay_close_all(struct rill_relay *r);
/* Closes the channel and forgets the peer. */
void rill_relay_remove(struct rill_relay_peer *p);
void rill_relay_stats(const struct rill_relay *r, struct rill_history_stats *st, size_t *max_queue);
void rill_relay_free(struct rill_relay *r);

#endif
