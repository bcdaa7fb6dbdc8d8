/* SPDX-License-Identifier: MIT */
#ifndef RILL_MASTER_H
#define RILL_MASTER_H
#include <stddef.h>

/*
 * The master process of --workers (notes/scale.md §3-4): it holds the
 * listening sockets for its whole life, forks the workers (who inherit it),
 * restarts crashed ones with backoff, relays the hub between them
 * (relay.c), and on SIGHUP swaps in a new generation of workers that load
 * the app afresh. It never runs Lua and never serves HTTP.
 */

/* Runs a worker in the child (the listening sockets are inherited): returns its exit status. */
typedef int (*rill_worker_main)(void *arg, int channel_fd, int slot);

struct rill_master_config {
    int workers;
    void (*announce)(void *arg); /* once the first generation serves: "rill listening on" */
    double drain_timeout;        /* seconds old workers keep their streams after a reload */
    const char *pid_file;        /* NULL: none */
    int watch;                   /* --reload: new code on every change of a loaded Lua file */
    size_t max_queue;            /* bytes queued to one worker before it counts as stuck */
    rill_worker_main worker_main;
    void *arg;
};

/* Runs until the workers are stopped; the exit status. */
int rill_master_run(const struct rill_master_config *cfg);

#endif
