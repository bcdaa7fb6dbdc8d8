/* SPDX-License-Identifier: MIT */
#ifndef RILL_HUB_REDIS_H
#define RILL_HUB_REDIS_H
#include <stddef.h>

#include "worker.h"

/* --hub redis://[user:password@]HOST:PORT[/db] */
struct rill_redis_url {
    char host[256];
    int port;
    char user[128], password[256];
    int db;
};

/* 0, or -1 with a message in err (rediss:// is refused: Debian's hiredis 0.14 has no TLS). */
int rill_redis_url_parse(const char *url, struct rill_redis_url *u, char *err, size_t errlen);

/*
 * The hub on Redis Streams from now on, in this process (a worker, or the
 * single process): connects in the background and reconnects with backoff.
 * prefix is the key namespace ("rill:"). -1 when nothing could be set up.
 */
int rill_hub_redis_start(struct rill_worker *w, const struct rill_redis_url *u, const char *prefix);
/* Runs the loop until the first connection attempt is over, at most seconds. */
void rill_hub_redis_settle(double seconds);
/* Disconnects (what waits is answered "unavailable") and frees everything. */
void rill_hub_redis_stop(void);

/* For the metrics: left as they are when Redis is not the hub. */
struct rill_backplane_figures {
    int connected;
    long reconnects;
    double lag; /* seconds */
};
void rill_hub_redis_figures(struct rill_backplane_figures *f);

#endif
