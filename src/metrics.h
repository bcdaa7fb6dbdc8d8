/* SPDX-License-Identifier: MIT */
#ifndef RILL_METRICS_H
#define RILL_METRICS_H
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

struct rill_worker;

/*
 * The server's counters, for rill.stats() and rill.metrics(). Each process
 * writes only its own slot; a scrape sums every slot. With a master, the
 * slots are one shared mapping made before the first fork: a worker that
 * dies leaves its counters in its slot (the next worker there goes on from
 * them, so totals never go back) and the master zeroes its gauges.
 */

#define RILL_M_METHODS        8 /* GET HEAD POST PUT DELETE PATCH OPTIONS other */
#define RILL_M_CLASSES        5 /* 1xx .. 5xx */
#define RILL_M_REQ_BUCKETS    11
#define RILL_M_STREAM_BUCKETS 8
#define RILL_M_ENDS           11 /* enum rill_end (accesslog.h) */
#define RILL_M_FETCH_OUTCOMES 6

enum rill_fetch_outcome {
    RILL_FETCH_OK,
    RILL_FETCH_TIMEOUT,
    RILL_FETCH_REFUSED,
    RILL_FETCH_DNS,
    RILL_FETCH_TLS,
    RILL_FETCH_OTHER
};

/* One process's figures. Counters only grow; gauges are what is now. */
struct rill_metrics {
    uint64_t pid; /* 0: a free slot */
    uint64_t requests[RILL_M_METHODS][RILL_M_CLASSES];
    uint64_t req_buckets[RILL_M_REQ_BUCKETS], req_count, req_us;
    uint64_t stream_buckets[RILL_M_STREAM_BUCKETS], stream_count, stream_us;
    uint64_t streams_ended[RILL_M_ENDS];
    uint64_t bytes_out;
    uint64_t handler_errors, budget_stops, memory_stops;
    uint64_t fetches[RILL_M_FETCH_OUTCOMES];
    uint64_t fetch_buckets[RILL_M_REQ_BUCKETS], fetch_count, fetch_us;
    uint64_t tails_opened;
    uint64_t hub_published, hub_delivered, hub_dropped, hub_gaps, hub_evicted;
    uint64_t backplane_reconnects;
    uint64_t access_log_dropped;
    /* gauges */
    int64_t connections, streams, tails, hub_topics, hub_subscribers, lua_bytes, fds;
    int64_t backplane_connected, backplane_lag_us;
};

/* Upper bounds of the histograms' buckets, in seconds (+Inf is the count). */
extern const double rill_metrics_req_bounds[RILL_M_REQ_BUCKETS];
extern const double rill_metrics_stream_bounds[RILL_M_STREAM_BUCKETS];

/* The master, before any fork: n shared slots. A single process: one of its own. -1 on failure. */
int rill_metrics_init(int slots);
/* The master: a free slot for a worker about to start (-1: none), and its release at reaping. */
int rill_metrics_reserve(void);
/* At reaping: slot if pid never wrote its own there, and any slot pid took itself. */
void rill_metrics_release(int slot, long pid);
/* In the process that uses slot from now on (the worker after its fork, or the single process). */
void rill_metrics_use(int slot);

/* This process's slot (a private one when it has none, so that writes go somewhere). */
struct rill_metrics *rill_metrics_mine(void);
#define RILL_METRIC_ADD(field, n) (rill_metrics_mine()->field += (n))

/* A request ended: evhttp's method (0: unknown), status, body bytes, duration, how, streamed. */
void rill_metrics_request(int cmd, int status, size_t sent, long long us, int end, int streamed);
void rill_metrics_fetch(enum rill_fetch_outcome outcome, long long us);
enum rill_fetch_outcome rill_metrics_fetch_outcome(const char *code);

/* Pushes the sum over every slot as a table (rill.stats()); this process's gauges refreshed first.
 */
int rill_metrics_push(lua_State *L);
/*
 * The same sum as "name value" lines (requests, requests_2xx, streams, hub_delivered...;
 * docs/running.md#stats), into out. Its length; out is always ended.
 */
size_t rill_metrics_summary(char *out, size_t cap);
/* Refreshes this process's gauges every second on base (the server's loop). */
void rill_metrics_start(struct rill_worker *w);
void rill_metrics_stop(void);
/* At exit, after the access log's last line: the last counts in, this process's gauges zero. */
void rill_metrics_final(struct rill_worker *w);

#endif
