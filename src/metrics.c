/* SPDX-License-Identifier: MIT */
/*
 * The server's figures for rill.stats() and rill.metrics(): counters bumped
 * where things happen (a request's end, a fetch's answer, an event written
 * to a subscriber), gauges and per-process counters copied once a second
 * (and before every scrape) from where they are kept anyway.
 *
 * Each process writes only its own slot, so nothing is locked: a scrape
 * reads every slot (a torn read of an aligned 64-bit word cannot happen on
 * our targets) and sums them. With --workers the slots are one MAP_SHARED
 * mapping the master makes before it forks; the master hands each new
 * worker a free slot and, when it reaps one, zeroes the slot's gauges but
 * keeps its counters, so the next worker there goes on from them and a
 * total never goes back (Prometheus would read that as a restart).
 */
#include "metrics.h"

#include <dirent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accesslog.h"
#include "effects.h"
#include "hub.h"
#include "hub_redis.h"
#include "server.h"
#include "worker.h"

_Static_assert(sizeof(struct rill_metrics) % sizeof(uint64_t) == 0, "summed as 64-bit words");

const double rill_metrics_req_bounds[RILL_M_REQ_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10};
const double rill_metrics_stream_bounds[RILL_M_STREAM_BUCKETS] = {1,    10,   60,    300,
                                                                  1800, 3600, 21600, 86400};

static struct {
    struct rill_metrics *slots;
    int n, mine, shared;
    struct rill_metrics spare; /* writes of a process with no slot go here */
    struct rill_worker *w;
    struct event *tick;
    /* what the per-process counters were at the last copy: their slot gets the difference */
    struct {
        long errors, dropped, gaps, evicted, reconnects;
        unsigned long log_dropped;
    } seen;
    int ticks; /* refreshes so far: the descriptors are counted every tenth */
    long fds;  /* the last count that could be made */
} M = {NULL, 0, -1, 0, {0}, NULL, NULL, {0, 0, 0, 0, 0, 0}, 0, 0};

int rill_metrics_init(int slots)
{
    size_t size = (size_t)slots * sizeof(struct rill_metrics);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    M.slots = p;
    M.n = slots;
    M.shared = slots > 1;
    return 0;
}

/* Takes a free slot for owner (a compare-and-swap: the master and slotless workers both take). */
static int claim(uint64_t owner)
{
    for (int i = 0; i < M.n; i++) {
        uint64_t free_slot = 0;
        if (__atomic_compare_exchange_n(&M.slots[i].pid, &free_slot, owner, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return i;
    }
    return -1;
}

int rill_metrics_reserve(void)
{
    return claim(1); /* taken; the worker writes its pid */
}

static void zero_gauges(struct rill_metrics *s)
{
    s->connections = s->streams = s->tails = s->hub_topics = s->hub_subscribers = 0;
    s->lua_bytes = s->fds = s->backplane_connected = s->backplane_lag_us = 0;
}

void rill_metrics_release(int slot, long pid)
{
    for (int i = 0; i < M.n; i++) {
        uint64_t owner = __atomic_load_n(&M.slots[i].pid, __ATOMIC_ACQUIRE);
        /* the one reserved for it (still 1 if it died before writing its pid), or one it took */
        if ((i == slot && (owner == 1 || owner == (uint64_t)pid)) ||
            (pid > 1 && owner == (uint64_t)pid)) {
            zero_gauges(&M.slots[i]);
            __atomic_store_n(&M.slots[i].pid, 0, __ATOMIC_RELEASE);
        }
    }
}

/* What this process counted with no slot of its own goes into the one it has now. */
static void merge_spare(void)
{
    uint64_t *dst = (uint64_t *)&M.slots[M.mine];
    const uint64_t *src = (const uint64_t *)&M.spare;
    for (size_t k = 1; k < sizeof M.spare / sizeof(uint64_t); k++)
        dst[k] += src[k];
    memset(&M.spare, 0, sizeof M.spare);
    zero_gauges(&M.slots[M.mine]);
}

void rill_metrics_use(int slot)
{
    M.mine = slot >= 0 && slot < M.n ? slot : -1;
    memset(&M.seen, 0, sizeof M.seen); /* this process's own counters start from 0 */
    if (M.mine < 0)
        return;
    __atomic_store_n(&M.slots[M.mine].pid, (uint64_t)getpid(), __ATOMIC_RELEASE);
    merge_spare();
}

/* A worker started when every slot was taken (generations draining) takes one once one frees. */
static void claim_late(void)
{
    if (M.mine >= 0 || !M.shared)
        return;
    int slot = claim((uint64_t)getpid());
    if (slot >= 0) {
        M.mine = slot;
        merge_spare();
    }
}

struct rill_metrics *rill_metrics_mine(void)
{
    return M.mine >= 0 ? &M.slots[M.mine] : &M.spare;
}

/* The order of methods[] in rill_metrics_push; 7: other (TRACE, CONNECT, unknown). */
static int method_index(int cmd)
{
    static const int cmds[] = {EVHTTP_REQ_GET,    EVHTTP_REQ_HEAD,   EVHTTP_REQ_POST,
                               EVHTTP_REQ_PUT,    EVHTTP_REQ_DELETE, EVHTTP_REQ_PATCH,
                               EVHTTP_REQ_OPTIONS};
    for (int i = 0; i < 7; i++)
        if (cmd == cmds[i])
            return i;
    return 7;
}

static void observe(uint64_t *buckets, const double *bounds, int n, long long us)
{
    double s = (double)us / 1e6;
    for (int i = 0; i < n; i++)
        if (s <= bounds[i])
            buckets[i]++; /* cumulative, as Prometheus's le buckets are */
}

void rill_metrics_request(int cmd, int status, size_t sent, long long us, int end, int streamed)
{
    struct rill_metrics *s = rill_metrics_mine();
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : 4;
    s->requests[method_index(cmd)][cls]++;
    s->bytes_out += sent;
    if (us < 0)
        us = 0;
    /* counts first, then buckets: a scrape meanwhile never sees a bucket above its +Inf */
    if (streamed) {
        s->stream_count++;
        s->stream_us += (uint64_t)us;
        __atomic_thread_fence(__ATOMIC_RELEASE); /* read by other processes, buckets first */
        observe(s->stream_buckets, rill_metrics_stream_bounds, RILL_M_STREAM_BUCKETS, us);
        if (end >= 0 && end < RILL_M_ENDS)
            s->streams_ended[end]++;
    } else {
        s->req_count++;
        s->req_us += (uint64_t)us;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        observe(s->req_buckets, rill_metrics_req_bounds, RILL_M_REQ_BUCKETS, us);
    }
}

void rill_metrics_fetch(enum rill_fetch_outcome outcome, long long us)
{
    struct rill_metrics *s = rill_metrics_mine();
    s->fetches[outcome]++;
    s->fetch_count++;
    s->fetch_us += (uint64_t)(us < 0 ? 0 : us);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    observe(s->fetch_buckets, rill_metrics_req_bounds, RILL_M_REQ_BUCKETS, us < 0 ? 0 : us);
}

enum rill_fetch_outcome rill_metrics_fetch_outcome(const char *code)
{
    static const char *const codes[] = {"ok", "timeout", "refused", "dns", "tls"};
    for (int i = 0; code && i < 5; i++)
        if (strcmp(code, codes[i]) == 0)
            return (enum rill_fetch_outcome)i;
    return RILL_FETCH_OTHER;
}

/* ---- gauges, and the per-process counters kept elsewhere -------------------------- */

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

/* Adds to *slot what *now grew since *seen (a counter of this process). */
static void add_growth(uint64_t *slot, long now, long *seen)
{
    if (now > *seen)
        *slot += (uint64_t)(now - *seen);
    *seen = now;
}

/* The counters this process keeps elsewhere: their growth goes into its slot. */
static void copy_counters(struct rill_metrics *s, struct rill_worker *w)
{
    const struct hub_stats *hs = rill_hub_stats();
    struct rill_backplane_figures bf = {1, 0, 0};
    rill_hub_redis_figures(&bf);
    add_growth(&s->handler_errors, w->stats.errors, &M.seen.errors);
    add_growth(&s->hub_dropped, hs->dropped, &M.seen.dropped);
    add_growth(&s->hub_gaps, hs->gaps, &M.seen.gaps);
    add_growth(&s->hub_evicted, hs->evicted, &M.seen.evicted);
    add_growth(&s->backplane_reconnects, bf.reconnects, &M.seen.reconnects);
    unsigned long dropped = rill_accesslog_dropped();
    if (dropped > M.seen.log_dropped)
        s->access_log_dropped += dropped - M.seen.log_dropped;
    M.seen.log_dropped = dropped;
}

/* scrape: the descriptors are counted now (else every tenth refresh: /proc costs per fd) */
static void refresh(int scrape)
{
    struct rill_worker *w = M.w;
    if (!w)
        return;
    claim_late();
    struct rill_metrics *s = rill_metrics_mine();
    const struct hub_stats *hs = rill_hub_stats();
    s->streams = w->stats.streams;
    s->connections = w->server ? rill_server_connections(w->server) : 0;
    s->tails = rill_tail_count();
    s->hub_topics = hs->topics;
    s->hub_subscribers = hs->subscribers;
    s->lua_bytes = (int64_t)rill_worker_memory();
    if (scrape || M.ticks++ % 10 == 0) {
        long fds = count_fds();
        if (fds >= 0) /* none to spare (EMFILE): the last count stands */
            M.fds = fds;
    }
    s->fds = M.fds;
    struct rill_backplane_figures bf = {1, 0, 0};
    rill_hub_redis_figures(&bf);
    s->backplane_connected = bf.connected;
    s->backplane_lag_us = (int64_t)(bf.lag * 1e6);
    copy_counters(s, w);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    refresh(0);
}

void rill_metrics_start(struct rill_worker *w)
{
    if (!M.slots && rill_metrics_init(1) == 0)
        rill_metrics_use(0); /* a single process: one slot of its own */
    M.w = w;
    if (M.tick)
        return;
    M.tick = event_new(w->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval one = {1, 0};
    if (M.tick)
        event_add(M.tick, &one);
}

void rill_metrics_stop(void)
{
    if (M.tick)
        event_free(M.tick);
    M.tick = NULL;
    M.w = NULL;
}

void rill_metrics_final(struct rill_worker *w)
{
    struct rill_metrics *s = rill_metrics_mine();
    copy_counters(s, w);
    zero_gauges(s);
}

/* ---- the sum, as Lua sees it ---------------------------------------------------------- */

static void sum_into(struct rill_metrics *t, int *workers)
{
    memset(t, 0, sizeof *t);
    *workers = 0;
    struct rill_metrics *slots = M.slots ? M.slots : &M.spare;
    int n = M.slots ? M.n : 1;
    int64_t lag = 0;
    for (int i = 0; i < n; i++) {
        const uint64_t *src = (const uint64_t *)&slots[i];
        uint64_t *dst = (uint64_t *)t;
        /* every field is 64 bits: the struct is summed as an array of them (gauges wrap back) */
        for (size_t k = 1; k < sizeof *t / sizeof(uint64_t); k++)
            dst[k] += src[k];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        *workers += slots[i].pid != 0;
        if (slots[i].backplane_lag_us > lag)
            lag = slots[i].backplane_lag_us;
    }
    t->backplane_lag_us = lag; /* the worst worker's, not a sum */
}

static const char *const methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                      "DELETE", "PATCH", "OPTIONS", "other"};
static const char *const ends[] = {"ok",      "ok",      "client_gone", "handler_end",
                                   "error",   "drain",   "shutdown",    "slow_client",
                                   "timeout", "refused", "disconnected"};
static const char *const outcomes[] = {"ok", "timeout", "refused", "dns", "tls", "other"};

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void push_buckets(lua_State *L, const uint64_t *b, const double *bounds, int n,
                         uint64_t count, uint64_t us)
{
    lua_createtable(L, 0, 3);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 2, 0);
        lua_pushnumber(L, bounds[i]);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)b[i]);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "buckets");
    set_int(L, "count", count);
    lua_pushnumber(L, (double)us / 1e6);
    lua_setfield(L, -2, "sum");
}

int rill_metrics_push(lua_State *L)
{
    struct rill_metrics t;
    int workers;
    refresh(1);
    sum_into(&t, &workers);
    lua_createtable(L, 0, 24);
    set_int(L, "workers", (uint64_t)workers);
    lua_createtable(L, 0, RILL_M_METHODS); /* requests[method][class] */
    for (int m = 0; m < RILL_M_METHODS; m++) {
        lua_createtable(L, 0, RILL_M_CLASSES);
        for (int c = 0; c < RILL_M_CLASSES; c++) {
            char k[4] = {(char)('1' + c), 'x', 'x', 0};
            set_int(L, k, t.requests[m][c]);
        }
        lua_setfield(L, -2, methods[m]);
    }
    lua_setfield(L, -2, "requests");
    push_buckets(L, t.req_buckets, rill_metrics_req_bounds, RILL_M_REQ_BUCKETS, t.req_count,
                 t.req_us);
    lua_setfield(L, -2, "request_duration");
    push_buckets(L, t.stream_buckets, rill_metrics_stream_bounds, RILL_M_STREAM_BUCKETS,
                 t.stream_count, t.stream_us);
    lua_setfield(L, -2, "stream_duration");
    lua_createtable(L, 0, RILL_M_ENDS);
    for (int e = 2; e < RILL_M_ENDS; e++) /* none and ok are not a stream's ends */
        set_int(L, ends[e], t.streams_ended[e]);
    lua_setfield(L, -2, "streams_ended");
    set_int(L, "bytes_out", t.bytes_out);
    set_int(L, "connections", (uint64_t)t.connections);
    set_int(L, "streams", (uint64_t)t.streams);
    set_int(L, "handler_errors", t.handler_errors);
    set_int(L, "budget_stops", t.budget_stops);
    set_int(L, "memory_stops", t.memory_stops);
    lua_createtable(L, 0, RILL_M_FETCH_OUTCOMES);
    for (int o = 0; o < RILL_M_FETCH_OUTCOMES; o++)
        set_int(L, outcomes[o], t.fetches[o]);
    lua_setfield(L, -2, "fetches");
    push_buckets(L, t.fetch_buckets, rill_metrics_req_bounds, RILL_M_REQ_BUCKETS, t.fetch_count,
                 t.fetch_us);
    lua_setfield(L, -2, "fetch_duration");
    set_int(L, "tails", (uint64_t)t.tails);
    set_int(L, "tails_opened", t.tails_opened);
    lua_createtable(L, 0, 10);
    set_int(L, "topics", (uint64_t)t.hub_topics);
    set_int(L, "subscribers", (uint64_t)t.hub_subscribers);
    set_int(L, "published", t.hub_published);
    set_int(L, "delivered", t.hub_delivered);
    set_int(L, "dropped", t.hub_dropped);
    set_int(L, "gaps", t.hub_gaps);
    set_int(L, "evicted", t.hub_evicted);
    set_int(L, "backplane_connected", (uint64_t)t.backplane_connected);
    set_int(L, "backplane_reconnects", t.backplane_reconnects);
    lua_pushnumber(L, (double)t.backplane_lag_us / 1e6);
    lua_setfield(L, -2, "backplane_lag");
    lua_setfield(L, -2, "hub");
    set_int(L, "lua_bytes", (uint64_t)t.lua_bytes);
    set_int(L, "fds", (uint64_t)t.fds);
    set_int(L, "access_log_dropped", t.access_log_dropped);
    return 1;
}

/* ---- the sum, as `rill stats` prints it ------------------------------------------------ */

struct text {
    char *p;
    size_t len, cap;
};

static void line_of(struct text *t, const char *prefix, const char *name, uint64_t v)
{
    if (t->len >= t->cap)
        return;
    int n = snprintf(t->p + t->len, t->cap - t->len, "%s%s %llu\n", prefix, name,
                     (unsigned long long)v);
    if (n > 0)
        t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

size_t rill_metrics_summary(char *out, size_t cap)
{
    struct text t = {out, 0, cap};
    struct rill_metrics m;
    int workers;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    refresh(1);
    sum_into(&m, &workers);
    uint64_t classes[RILL_M_CLASSES] = {0}, requests = 0, fetches = 0;
    for (int k = 0; k < RILL_M_METHODS; k++)
        for (int c = 0; c < RILL_M_CLASSES; c++)
            classes[c] += m.requests[k][c], requests += m.requests[k][c];
    for (int o = 0; o < RILL_M_FETCH_OUTCOMES; o++)
        fetches += m.fetches[o];
    line_of(&t, "", "workers", (uint64_t)workers);
    line_of(&t, "", "requests", requests);
    for (int c = 0; c < RILL_M_CLASSES; c++) {
        char name[4] = {(char)('1' + c), 'x', 'x', 0};
        line_of(&t, "requests_", name, classes[c]);
    }
    line_of(&t, "", "connections", (uint64_t)m.connections);
    line_of(&t, "", "streams", (uint64_t)m.streams);
    for (int e = 2; e < RILL_M_ENDS; e++)
        line_of(&t, "streams_ended_", ends[e], m.streams_ended[e]);
    line_of(&t, "", "bytes_out", m.bytes_out);
    line_of(&t, "", "handler_errors", m.handler_errors);
    line_of(&t, "", "budget_stops", m.budget_stops);
    line_of(&t, "", "memory_stops", m.memory_stops);
    line_of(&t, "", "fetches", fetches);
    for (int o = 0; o < RILL_M_FETCH_OUTCOMES; o++)
        line_of(&t, "fetches_", outcomes[o], m.fetches[o]);
    line_of(&t, "", "tails", (uint64_t)m.tails);
    line_of(&t, "", "tails_opened", m.tails_opened);
    line_of(&t, "", "hub_topics", (uint64_t)m.hub_topics);
    line_of(&t, "", "hub_subscribers", (uint64_t)m.hub_subscribers);
    line_of(&t, "", "hub_published", m.hub_published);
    line_of(&t, "", "hub_delivered", m.hub_delivered);
    line_of(&t, "", "hub_dropped", m.hub_dropped);
    line_of(&t, "", "hub_gaps", m.hub_gaps);
    line_of(&t, "", "hub_evicted", m.hub_evicted);
    line_of(&t, "", "backplane_connected", (uint64_t)m.backplane_connected);
    line_of(&t, "", "backplane_reconnects", m.backplane_reconnects);
    line_of(&t, "", "backplane_lag_ms", (uint64_t)(m.backplane_lag_us / 1000));
    line_of(&t, "", "lua_bytes", (uint64_t)m.lua_bytes);
    line_of(&t, "", "fds", (uint64_t)m.fds);
    line_of(&t, "", "access_log_dropped", m.access_log_dropped);
    return t.len;
}
