/* SPDX-License-Identifier: MIT */
#ifndef RILL_ACCESSLOG_H
#define RILL_ACCESSLOG_H
#include <stddef.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

/* How a request ended: the `end` field. */
enum rill_end {
    RILL_END_NONE,         /* not said: ok, or handler_end for a stream */
    RILL_END_OK,           /* a plain reply went out */
    RILL_END_CLIENT_GONE,  /* the client closed first */
    RILL_END_HANDLER_END,  /* the handler (or the topic it pumped) finished the stream */
    RILL_END_ERROR,        /* the handler raised mid-stream: the body is truncated */
    RILL_END_DRAIN,        /* a reload's drain deadline */
    RILL_END_SHUTDOWN,     /* SIGTERM/SIGINT, or the master gone */
    RILL_END_SLOW_CLIENT,  /* the hub cut a subscriber that fell behind */
    RILL_END_TIMEOUT,      /* the inactivity timer dropped a client that stopped reading */
    RILL_END_REFUSED,      /* answered before Lua: 400, 414, 431, 503 */
    RILL_END_DISCONNECTED, /* hub.disconnect cut a subscriber */
};

/* An address's cap in a record (INET6_ADDRSTRLEN and then some). */
#define RILL_ACCESS_ADDR_MAX 64

/*
 * What a request did, kept in the request itself (no allocation) and filled
 * in as it goes: counted by the metrics when it ends, always, and written
 * as the access log's line when the log is on.
 */
struct rill_outcome {
    struct timespec t0;    /* monotonic, at the head: the duration */
    size_t sent;           /* body bytes handed to the connection */
    unsigned short status; /* 0 until a reply starts */
    unsigned short cmd;    /* evhttp's method (enum evhttp_cmd_type); 0: unknown (a refused head) */
    unsigned char end;     /* enum rill_end: the first cause said wins */
    unsigned upstream_us;  /* rill.fetch calls' time to their heads, summed (saturating) */
    unsigned head : 1;     /* a HEAD (or a 204 or 304 reply): no body bytes */
    unsigned streamed : 1; /* a chunked reply was started */
    unsigned fetched : 1;  /* the handler called rill.fetch: upstream_us says how long */
};

/* o for a request whose head came now; cmd 0 when its method is unknown. */
void rill_outcome_start(struct rill_outcome *o, int cmd);
static inline void rill_outcome_ends(struct rill_outcome *o, enum rill_end end)
{
    if (o->end == RILL_END_NONE)
        o->end = (unsigned char)end;
}

/*
 * The strings the log needs of one request, captured at its start (a stream
 * fed from C lets go of its head). One allocation, the strings after the
 * struct. Only made while the log is on.
 */
struct rill_access {
    struct timeval start; /* wall clock, for the time field */
    const char *method;   /* static; NULL: unknown (a refused head) */
    const char *target;   /* NULL: unknown */
    const char *peer;     /* the TCP peer */
    const char *client;   /* the client --trust-proxy resolved (req.remote_addr), else peer */
    const char *ua, *referer;
    int major, minor;
};

/*
 * Opens the log: path "-" is stdout, "off" or NULL none; json selects the
 * format. The descriptor is non-blocking and O_APPEND. 0, or -1 with err.
 */
int rill_accesslog_open(struct event_base *base, const char *path, int json, char *err,
                        size_t errlen);
int rill_accesslog_enabled(void);
/* SIGUSR1: a file is opened again under its name (logrotate moved it). */
void rill_accesslog_reopen(void);
/*
 * A worker becoming ready: the file is opened again if PATH no longer names
 * it (moved while the app loaded, when the master sends no SIGUSR1).
 */
void rill_accesslog_check_moved(void);
/* Lines dropped so far: the buffer was full (a reader that does not read) or a write failed. */
unsigned long rill_accesslog_dropped(void);
/* Bytes the buffer's compaction has copied: never more than were written (the unit test's check).
 */
size_t rill_accesslog_moved(void);
/* A last flush (a pipe or socket: up to 1 s), lines left counted and logged, then closes. */
void rill_accesslog_close(void);

/*
 * A record for a request starting now; NULL when the log is off or out of
 * memory. client NULL: the peer. The target is kept up to 2048 bytes, the
 * user agent and referer up to 512 each: a line always fits PIPE_BUF.
 */
struct rill_access *rill_access_new(const char *method, const char *target, int major, int minor,
                                    const char *peer, const char *client, const char *ua,
                                    const char *referer);
/*
 * The request is over: o is counted (metrics.h), and when a is not NULL its
 * line is written (id: the request id, or NULL) and a freed.
 */
void rill_access_done(struct rill_access *a, struct rill_outcome *o, const char *id);

#endif
