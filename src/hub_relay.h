/* SPDX-License-Identifier: MIT */
#ifndef RILL_HUB_RELAY_H
#define RILL_HUB_RELAY_H
#include "worker.h"

/*
 * A worker's end of the master relay (notes/scale.md §3): the hub's
 * backplane when several workers run, and the worker's control channel.
 * The master assigns every id, in one order per topic, and sends each event
 * to every worker, the publisher included: a worker delivers its own
 * publish only when it comes back, so all workers see one order. A
 * (re)started worker first gets the master's history (the snapshot).
 */

struct rill_relay_control {
    void (*ready)(void *arg);                  /* the snapshot is applied */
    void (*accept)(void *arg);                 /* the master says: accept connections */
    void (*drain)(void *arg, double deadline); /* seconds from now */
    void (*gone)(void *arg);                   /* the master closed the channel, or died */
    void *arg;
};

/* Starts on the channel fd and makes the relay the hub's backplane. 0, or -1. */
int rill_hub_relay_start(struct rill_worker *w, int fd, const struct rill_relay_control *ctl);
void rill_hub_relay_send_ready(void);
/* Written at once (waiting up to a second for room): the worker exits right after. */
void rill_hub_relay_send_failed(const char *message);
/* The Lua files the app loaded, for the master's --reload watch. */
void rill_hub_relay_send_files(const char *const *paths, int n);
/* Tells the master this worker stopped accepting (after a DRAIN). */
void rill_hub_relay_send_draining(void);
/* Closes the channel (at exit); the hub goes back to in-process. */
void rill_hub_relay_stop(void);

#endif
