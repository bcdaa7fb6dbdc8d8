/* SPDX-License-Identifier: MIT */
/*
 * The evhttp server and the request lifecycle. A request lives from the
 * gencb until evhttp is done with it: the reply is flushed (on_complete) or
 * the client left (close callback). Its handler task may end before that
 * (reply queued) or after (client gone mid-stream); r is freed here only,
 * when both are over, so no callback ever sees freed state.
 */
#include "server.h"

#include <dirent.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <lauxlib.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accesslog.h"
#include "client_error.h"
#include "compress.h"
#include "conn.h"
#include "ctlfile.h"
#include "effects.h"
#include "httpcheck.h"
#include "lean.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "replyhead.h"
#include "reqbody.h"
#include "response.h"
#include "signals.h"
#include "tls.h"

#define NSIGNALS          6    /* SIGINT SIGTERM SIGUSR1 SIGUSR2 SIGHUP SIGQUIT */
#define RILL_CLIENT_ERROR (-2) /* a task status of ours: the handler raised a client error */

struct rill_server {
    struct rill_worker *w;
    struct evhttp *http;  /* the plain listeners' */
    struct evhttp *https; /* the TLS listeners'; NULL: none */
    struct rill_tls *tls;
    struct rill_listen listen[RILL_MAX_LISTENS];
    struct evhttp_bound_socket *bound[RILL_MAX_LISTENS];
    int nlisten, accepting;
    struct rill_conns *conns;
    struct rill_request *live; /* every request not yet freed */
    int active;
    int handler_ref, driver_ref, out_ref;
    double grace;
    int draining;             /* stopping: SIGTERM, or the master gone */
    int signalled;            /* by a signal: a second one exits at once */
    struct event *idle_sweep; /* retiring: closes the connections a finished reply left idle */
    int retiring;             /* a reload's drain: old streams go on, nothing new is accepted */
    int fd_inherited;         /* the master's sockets: accepting waits for rill_server_accept */
    const char *pid_file;     /* a single process's: `rill stats` reads its answer beside it */
    struct event *signals[NSIGNALS];
    struct event *grace_timer, *drain_timer;
};

/* ---- lifecycle -------------------------------------------------------------- */

/*
 * Whether the worker is done: stopping, once no request is left; retiring
 * (a reload's drain), once no connection is left either, since a connection
 * with a request on its way in (its head partly read, or read but not yet
 * parsed) has no request yet, and gets its reply, with Connection: close,
 * before the worker goes. The drain deadline bounds the wait.
 */
static void maybe_exit(struct rill_server *s)
{
    if (s->active > 0 || !(s->draining || s->retiring))
        return;
    if (s->retiring && !s->draining && s->conns && rill_conns_count(s->conns) > 0)
        return;
    event_base_loopexit(s->w->base, NULL);
}

static void on_conn_closed(void *arg)
{
    maybe_exit(arg);
}

static void request_free(struct rill_request *r)
{
    struct rill_server *s = r->srv;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    s->active--;
    rill_access_done(r->log, &r->out, r->id[0] ? r->id : NULL); /* counted; its one log line */
    r->log = NULL;
    rill_request_detach(r);
    rill_response_stop_heartbeat(r);
    rill_gz_stream_free(r->gz);
    free(r->gzs); /* unpumped by now: its subscription no longer points to it */
    rill_body_free(r);
    free(r->stash);
    free(r);
    maybe_exit(s);
}

static int task_live(struct rill_request *r)
{
    return r->task.ref != LUA_NOREF;
}

/* Frees r once both its task and evhttp are done with it. */
static void maybe_free(struct rill_request *r)
{
    if (!task_live(r) && !r->task.running && (r->completed || r->gone))
        request_free(r);
}

/* A drain closes connections once idle: a reply framed keep-alive before it leaves one so. */
static void on_idle_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct rill_server *s = arg;
    (void)fd, (void)what;
    if (s->conns)
        rill_conns_close_idle(s->conns);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    struct rill_request *r = arg;
    struct rill_server *s = r->srv;
    if (r->conn)
        rill_conn_replied(r->conn, req); /* the connection may read its next request */
    r->conn = NULL;
    r->completed = 1;
    r->req = NULL;
    if (s->retiring && s->idle_sweep) /* after evhttp is done with the connection */
        event_active(s->idle_sweep, EV_TIMEOUT, 1);
    maybe_free(r);
}

/* No Lua runs for r once its task is released: its req is cut off then. */
static void release_task(struct rill_request *r)
{
    rill_request_detach(r);
    rill_task_release(&r->task);
}

static void log_error(struct rill_request *r, int nres)
{
    lua_State *co = r->task.co;
    const char *tb = lua_tostring(co, -1);
    (void)nres;
    rill_log_at(RILL_LOG_ERROR, "request %s: handler error: %s", rill_request_id(r), tb ? tb : "?");
    r->task.w->stats.errors++;
}

/*
 * A client error (client_error.h) before the reply: answered with its status
 * and reason, and not the app's fault, so no traceback is logged. 1 if it was one.
 */
static int answer_client_error(struct rill_request *r)
{
    int code;
    const char *reason;
    if (!rill_client_error_get(r->task.co, -2, &code, &reason)) /* below: the traceback */
        return 0;
    if (r->req && !r->gone && !r->responded)
        rill_response_error(r, code, reason);
    else if ((r->req || r->lean) && !r->gone) { /* mid-stream: too late for a status */
        char safe[256];
        rill_log_at(RILL_LOG_WARN, "request %s: client error %d after the reply began: %s",
                    rill_request_id(r), code, rill_log_safe(reason, safe, sizeof safe));
    }
    return 1;
}

/* The handler's task ended: make sure a reply is queued, then wait for evhttp. */
static void on_task_done(struct rill_task *t, int status, int nres)
{
    struct rill_request *r = (struct rill_request *)t;
    if (status != LUA_OK && status != RILL_CANCELLED && answer_client_error(r))
        status = RILL_CLIENT_ERROR;
    else if (status != LUA_OK && status != RILL_CANCELLED)
        log_error(r, nres);
    else if (status == LUA_OK && r->req && !r->streaming && !r->responded)
        rill_log_at(RILL_LOG_ERROR, "request %s: the handler ended without a response",
                    rill_request_id(r));
    int cut = 0; /* a generator out.drive took could not go on (out of memory) */
    if (r->drive) {
        if (status == LUA_OK && r->req && !r->gone && r->streaming && rill_response_drive(r) == 0)
            return;                          /* the task goes on in the app's generator */
        r->drive = 0;                        /* not adopted: the generator goes with its ref */
        rill_thread_drop(t->w, r->pump_ref); /* its <close> variables run, as the driver's would */
        cut = 1;
    }
    if ((r->req || r->lean) && !r->gone) { /* lean: a driven generator's stream, off evhttp */
        if (r->streaming && r->pump && status == LUA_OK)
            rill_response_travel_light(r); /* the stream goes on, fed from C (out.pump) */
        else if (r->streaming)             /* an error mid-stream truncates it */
            rill_response_end(r, status == LUA_OK && !cut);
        else if (!r->responded)
            rill_response_error(r, 500, "internal server error");
    }
    release_task(r);
    maybe_free(r);
}

enum rill_reply rill_server_reply(const struct rill_request *r)
{
    if (!r->responded)
        return RILL_REPLY_PENDING;
    return r->streaming ? RILL_REPLY_STREAMING : RILL_REPLY_WHOLE;
}

void rill_server_timed_out(struct rill_request *r)
{
    rill_outcome_ends(&r->out, RILL_END_TIMEOUT);
}

void rill_server_stream_done(struct rill_request *r)
{
    struct rill_server *s = r->srv;
    r->completed = 1;
    if (s->retiring && s->idle_sweep)
        event_active(s->idle_sweep, EV_TIMEOUT, 1);
    maybe_free(r);
}

struct rill_conns *rill_server_conns(struct rill_request *r)
{
    return r->srv->conns;
}

void rill_server_client_gone(struct rill_request *r)
{
    rill_outcome_ends(&r->out, RILL_END_CLIENT_GONE);
    rill_response_unpump(r);
    r->gone = 1;
    r->conn = NULL; /* being freed */
    if (r->req && !evhttp_request_get_connection(r->req))
        evhttp_send_reply_end(r->req); /* detached: ours to free (notes Q2, landmine 7) */
    r->req = NULL;
    if (r->streaming)
        r->task.w->stats.streams--;
    r->streaming = 0;
    rill_response_stop_heartbeat(r);
    if (task_live(r) && !r->task.running) {
        rill_task_cancel(&r->task); /* <close> variables run, the effect is undone */
        release_task(r);
    } else if (task_live(r)) {
        rill_task_cancel(&r->task); /* finished by the resume in progress */
        return;
    }
    maybe_free(r);
}

static void abort_request(struct rill_task *t, int slow);

/* The client's address, as evhttp has it ("" when the connection is gone). */
static const char *peer_of(struct evhttp_request *req)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    return addr ? addr : "";
}

/* The access log's record of req (NULL: log off); known is 0 for a refused head's stand-in. */
/* The first User-Agent and Referer lines of req (as evhttp_find_header finds them), in one pass. */
static void agent_and_referer(struct evhttp_request *req, const char **ua, const char **referer)
{
    struct evkeyval *kv;
    *ua = *referer = NULL;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        int first = kv->key[0] | 0x20; /* most lines are ruled out without a call */
        if (first == 'u' && !*ua && strcasecmp(kv->key, "User-Agent") == 0)
            *ua = kv->value;
        else if (first == 'r' && !*referer && strcasecmp(kv->key, "Referer") == 0)
            *referer = kv->value;
    }
}

static struct rill_access *access_new(struct evhttp_request *req, int known)
{
    if (!rill_accesslog_enabled())
        return NULL;
    char out[RILL_PROXY_ADDR_CAP];
    const char *peer = peer_of(req), *ua = NULL, *referer = NULL;
    if (known)
        agent_and_referer(req, &ua, &referer);
    return rill_access_new(known ? rill_method_name(evhttp_request_get_command(req)) : NULL,
                           known ? evhttp_request_get_uri(req) : NULL, req->major, req->minor, peer,
                           rill_request_client(req, peer, out, sizeof out), ua, referer);
}

static struct rill_request *request_new(struct rill_server *s, struct evhttp_request *req)
{
    struct rill_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    rill_task_init(&r->task, s->w, on_task_done);
    r->task.owner_is_request = 1;
    r->task.abort = abort_request;
    r->srv = s;
    r->req = req;
    r->next = s->live;
    if (s->live)
        s->live->prev = r;
    s->live = r;
    s->active++;
    s->w->stats.requests++;
    rill_outcome_start(&r->out, evhttp_request_get_command(req));
    if ((r->log = access_new(req, 1)) != NULL)
        (void)rill_request_id(r); /* fixed now: the line is written once the head is gone */
    return r;
}

#define MAX_HEADERS 256

/*
 * evhttp skips the spaces before a value but leaves a tab, which RFC 9110
 * also counts as optional whitespace (Content-Length:<TAB>3). Trimmed in
 * place, so the checks and Lua see the value. A Transfer-Encoding led by a
 * tab never gets here: evhttp would not read it as chunked (headscan.c).
 */
static void trim_ows(char *value)
{
    size_t skip = strspn(value, " \t");
    if (skip)
        memmove(value, value + skip, strlen(value + skip) + 1);
}

/*
 * What evhttp lets through but a smuggler or a confused proxy could use
 * (notes/evhttp.md Q5): refused with 400 and the connection closed, so
 * nothing after it on the connection is taken as a request.
 */
static const char *bad_request(struct evhttp_request *req, char *path, size_t *path_len)
{
    struct rill_header headers[MAX_HEADERS];
    struct rill_request_head head = {rill_method_name(evhttp_request_get_command(req)),
                                     evhttp_request_get_uri(req),
                                     req->major,
                                     req->minor,
                                     headers,
                                     0,
                                     path,
                                     path_len};
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        if (head.nheaders == MAX_HEADERS)
            return "too many header fields";
        trim_ows(kv->value);
        headers[head.nheaders++] = (struct rill_header){kv->key, kv->value};
    }
    return rill_check_request(&head);
}

/*
 * A reply before Lua (a 4xx, or the 503 of a stopping worker), closing the
 * connection, and its access log line. A head the gate refused reaches us
 * as a stand-in (conn.c), so its request line is unknown: logged as "-".
 */
static void answer_refused(struct rill_server *s, struct evhttp_request *req, int status,
                           const char *body, struct rill_access *a, int known)
{
    struct rill_outcome o;
    rill_outcome_start(&o, known ? (int)evhttp_request_get_command(req) : 0);
    o.status = (unsigned short)status;
    o.sent = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD ? 0 : strlen(body);
    o.end = RILL_END_REFUSED;
    rill_reply_plain(req, s->w->base, status, body, 1);
    rill_access_done(a, &o, NULL);
}

/* A 4xx for a request refused before Lua, closing the connection. */
static void refuse(struct rill_server *s, struct evhttp_request *req, int status, const char *why,
                   int stand_in)
{
    char body[160];
    struct rill_access *a = access_new(req, !stand_in); /* first: the version as received */
    req->major = 1; /* evhttp would echo a version like 1.12 in the status line */
    req->minor = 1;
    snprintf(body, sizeof body, "%s: %s\n", status == 400 ? "bad request" : "refused", why);
    answer_refused(s, req, status, body, a, !stand_in);
}

static void on_refused_done(struct evhttp_request *req, void *arg)
{
    rill_conn_replied(arg, req);
}

/*
 * A request refused before Lua whose streamed body is unread (conn.c):
 * what the client still sends is dropped, and the refusal's end lingers
 * instead of closing at once (a reset could lose it).
 */
static void refusing(struct rill_conn *c, struct evhttp_request *req)
{
    if (!c || !rill_conn_body_unfinished(c))
        return;
    rill_conn_body_abandon(c);
    evhttp_request_set_on_complete_cb(req, on_refused_done, c);
}

/* evhttp's gencb: every request starts here. */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct rill_server *s = arg;
    struct rill_conn *c = rill_conn_of(s->conns, req);
    const char *why = "out of memory";
    int status = c ? rill_conn_dispatched(c, req, &why) : 503; /* a refused head's stand-in */
    int stand_in = status != 0 && c != NULL;
    char path[RILL_PATH_MAX]; /* decoded once: checked here, then req.path */
    size_t path_len = SIZE_MAX;
    if (status == 0 && (why = bad_request(req, path, &path_len)) != NULL)
        status = 400;
    if (status) {
        refusing(c, req);
        refuse(s, req, status, why, stand_in);
        return;
    }
    if (s->draining) {
        refusing(c, req);
        answer_refused(s, req, 503, "shutting down\n", access_new(req, 1), 1);
        return;
    }
    struct rill_request *r = request_new(s, req);
    if (!r) {
        refusing(c, req);
        answer_refused(s, req, 503, "out of memory\n", NULL, 1);
        return;
    }
    /* on_complete, or the connection's close (conn.c), ends evhttp's part */
    evhttp_request_set_on_complete_cb(req, on_complete, r);
    r->conn = c;
    r->tls = rill_conn_tls(c);
    rill_conn_attach(c, r);
    lua_State *co = rill_task_open(&r->task);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->driver_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->handler_ref);
    rill_request_push(co, r);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->out_ref);
    rill_request_push_route(co, r, -2, path_len == SIZE_MAX ? NULL : path, path_len);
    if (rill_task_resume(&r->task, 5) && !r->responded)
        rill_response_watch_close(r); /* waiting before the first byte */
}

/* ---- shutdown ----------------------------------------------------------------- */

/*
 * Before an event stream ends at shutdown or after a drain: a retry: with
 * random jitter, so its clients do not all reconnect at the same moment:
 * from 0.5 s to 5 s, and wider with more streams (10,000 spread over 15 s).
 */
static void send_retry_jitter(struct rill_request *r)
{
    struct evbuffer *buf = r->task.w->scratch;
    long spread = 4500 + r->task.w->stats.streams;
    if (spread > 60000)
        spread = 60000;
    evbuffer_add_printf(buf, "retry: %ld\n\n", 500 + random() % spread);
    rill_response_send(r, buf);
}

/*
 * Ends r now, its handler closed: a stream cleanly (shutdown) or cut off
 * (the hub dropping a slow subscriber), a handler still computing with a 503.
 */
static void request_stop(struct rill_request *r, int clean, enum rill_end why)
{
    rill_outcome_ends(&r->out, why);
    if (task_live(r)) {
        rill_task_cancel(&r->task);
        release_task(r);
    }
    int open = r->req || r->lean; /* a stream on evhttp, or taken off it */
    if (clean && open && r->streaming && r->sse)
        send_retry_jitter(r);
    /* evhttp may finish a reply at once (its output was empty), freeing r in on_complete */
    if (open && r->streaming)
        rill_response_end(r, clean);
    else if (r->req && !r->responded)
        rill_response_error(r, 503, "shutting down");
    else
        maybe_free(r);
}

static void abort_request(struct rill_task *t, int slow)
{
    request_stop((struct rill_request *)t, 0, slow ? RILL_END_SLOW_CLIENT : RILL_END_DISCONNECTED);
}

static void stop_all(struct rill_server *s, int streams_only, enum rill_end why)
{
    struct rill_request *r = s->live, *next;
    for (; r; r = next) {
        next = r->next;
        if (!streams_only || r->streaming)
            request_stop(r, 1, why);
    }
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct rill_server *s = arg;
    struct timeval last = {1, 0};
    (void)fd, (void)what;
    if (s->active > 0) {
        rill_log("grace period over: stopping %d request(s)", s->active);
        stop_all(s, 0, RILL_END_SHUTDOWN);
    }
    event_base_loopexit(s->w->base, &last); /* a last second to flush what was queued */
}

/* Through libevent, never a bare close: the socket stays in the master (notes/scale.md §4). */
static void stop_accepting(struct rill_server *s)
{
    rill_conns_listen(s->conns, NULL, 0); /* before the listeners are freed */
    for (int i = 0; i < s->nlisten; i++) {
        if (s->bound[i]) /* closes this process's copy */
            evhttp_del_accept_socket(s->listen[i].tls ? s->https : s->http, s->bound[i]);
        else if (!s->fd_inherited && s->listen[i].fd >= 0)
            close(s->listen[i].fd); /* bound, never accepted on */
        s->bound[i] = NULL;
        s->listen[i].fd = -1;
    }
    s->accepting = 0;
}

/*
 * A graceful stop: at SIGTERM/SIGINT, or when the master is gone. Only a
 * second signal cuts it short: the master's EOF and its PDEATHSIG SIGTERM
 * come together, in either order.
 */
static void begin_shutdown(struct rill_server *s, int by_signal)
{
    /* a worker's second SIGTERM is the master's after a pkill's: the master escalates itself */
    if (s->draining && by_signal && s->signalled && !s->fd_inherited) {
        rill_log("second signal: exiting now");
        event_base_loopbreak(s->w->base);
        return;
    }
    s->signalled |= by_signal;
    if (s->draining)
        return;
    s->draining = 1;
    stop_accepting(s);
    rill_background_stop_all();        /* rill.spawn, rill.every: cancelled, <close> run */
    stop_all(s, 1, RILL_END_SHUTDOWN); /* streams end now; other requests get the grace period */
    rill_log("shutting down: %d request(s) in flight", s->active);
    if (s->active == 0) {
        event_base_loopexit(s->w->base, NULL);
        return;
    }
    s->grace_timer = evtimer_new(s->w->base, on_grace_over, s);
    rill_timer_add(s->grace_timer, s->grace);
}

void rill_server_shutdown(struct rill_server *s)
{
    begin_shutdown(s, 0);
}

/* The drain deadline: the streams left end with a jittered retry:, then the worker exits. */
static void on_drain_over(evutil_socket_t fd, short what, void *arg)
{
    struct rill_server *s = arg;
    struct timeval last = {5, 0};
    (void)fd, (void)what;
    rill_log("drain deadline: ending %d request(s)", s->active);
    stop_all(s, 0, RILL_END_DRAIN);
    event_base_loopexit(s->w->base, &last); /* what was queued gets 5 s to go out */
}

void rill_server_drain(struct rill_server *s, double seconds)
{
    if (s->draining || s->retiring)
        return;
    s->retiring = 1;
    s->idle_sweep = event_new(s->w->base, -1, 0, on_idle_sweep, s);
    stop_accepting(s);
    rill_background_stop_all(); /* the new generation runs its own */
    rill_framing_close_all();
    rill_conns_close_idle(s->conns);
    rill_log("draining: %d request(s) go on for up to %.0f s", s->active, seconds);
    if (s->active == 0 && (!s->conns || rill_conns_count(s->conns) == 0)) {
        event_base_loopexit(s->w->base, NULL);
        return;
    }
    s->drain_timer = evtimer_new(s->w->base, on_drain_over, s);
    rill_timer_add(s->drain_timer, seconds);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory itself */
}

/*
 * SIGUSR2 (`rill stats`; a worker's comes from its master): the stats line,
 * and for a single process with a pid file, its answer beside it.
 */
static void print_stats(struct rill_server *s)
{
    struct rill_stats *st = &s->w->stats;
    /* the heap in use, from the allocator (not RSS): what specs bound per stream */
    struct mallinfo2 heap = mallinfo2();
    int fds = count_fds();
    rill_log_at(RILL_LOG_ALWAYS,
                "stats requests=%ld active=%d streams=%d blocked=%d tasks=%d errors=%ld lua_kb=%d "
                "fds=%d idle=%d connections=%d heap=%zu beats=%d access_log_dropped=%lu lean=%d",
                st->requests, s->active, st->streams, st->blocked, st->tasks, st->errors,
                lua_gc(s->w->L, LUA_GCCOUNT, 0), fds, rill_fetch_idle_connections(),
                rill_conns_count(s->conns), heap.uordblks, rill_response_beat_queues(),
                rill_accesslog_dropped(), rill_lean_count());
    if (!s->pid_file)
        return;
    char own[256];
    snprintf(own, sizeof own, "role single\nactive %d\nblocked %d\ntasks %d\nheap_bytes %zu\n",
             s->active, st->blocked, st->tasks, heap.uordblks);
    rill_ctlfile_stats(s->pid_file, own);
}

/* A single process's SIGHUP with https listeners: renewed certificates, the code kept. */
static void reload_tls(struct rill_server *s)
{
    char err[512];
    if (rill_tls_reload(s->tls, err, sizeof err) == 0)
        rill_log(
            "SIGHUP: TLS certificate and key read again (the code reloads only with a master)");
    else
        rill_log_at(RILL_LOG_ERROR, "SIGHUP: %s: the old certificate stays", err);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct rill_server *s = arg;
    if (sig == SIGUSR1) {
        rill_log_reopen(); /* logrotate: moved, then kill -USR1 */
        rill_accesslog_reopen();
        rill_log("logs reopened");
    } else if (sig == SIGUSR2) {
        print_stats(s);
    } else if (sig == SIGHUP && s->fd_inherited) /* its default would kill the server at once */
        rill_log("SIGHUP ignored: the master reloads (send it to the master)");
    else if (sig == SIGHUP && s->tls)
        reload_tls(s);
    else if (sig == SIGHUP)
        rill_log("SIGHUP ignored: reloading needs a master (--workers N, or --reload)");
    else if (sig == SIGQUIT) {
        rill_log("SIGQUIT: exiting now");
        event_base_loopbreak(s->w->base);
    } else
        begin_shutdown(s, 1);
}

/* ---- start ----------------------------------------------------------------------- */

/* The driver (lua/rill/respond.lua) and rill.core.out, anchored for every request. */
static int load_refs(struct rill_server *s, char *err, size_t errlen)
{
    lua_State *L = s->w->L;
    if (luaL_getmetafield(L, -1, "__name") != LUA_TNIL) {
        if (lua_type(L, -1) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -1), "rill.streamed_body") == 0)
            rill_body_stream_all(); /* the app is one handler that reads its bodies as they come */
        lua_pop(L, 1);
    }
    s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rill.respond");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    s->driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "rill.core");
    lua_getfield(L, -1, "out");
    s->out_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushnil(L); /* the driver's alone: an app's second head would be a framing error */
    lua_setfield(L, -2, "out");
    lua_pop(L, 2);
    return 0;
}

static void configure(struct rill_server *s, struct evhttp *http,
                      const struct rill_server_config *cfg)
{
    evhttp_set_gencb(http, on_request, s);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
    /* conn.c enforces the head size first, with a 414 or 431; this is a backstop */
    evhttp_set_max_headers_size(http, 2 * (ev_ssize_t)cfg->max_header_bytes);
    evhttp_set_max_body_size(http, (ev_ssize_t)cfg->max_body_bytes);
    rill_body_configure(cfg->max_body_bytes);
    evhttp_set_default_content_type(http, NULL); /* a reply with no body gets no type */
}

static void watch_signals(struct rill_server *s)
{
    const int sigs[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT};
    for (int i = 0; i < NSIGNALS; i++) {
        if (sigs[i] == SIGINT && s->fd_inherited)
            continue; /* a terminal's ^C reaches the master too: it stops the workers */
        s->signals[i] = evsignal_new(s->w->base, sigs[i], on_signal, s);
        event_add(s->signals[i], NULL);
    }
}

/* The sockets (bound here unless inherited), the certificate, and one evhttp per kind. */
static int open_listeners(struct rill_server *s, const struct rill_server_config *cfg, int backlog,
                          char *err, size_t errlen)
{
    int tls = 0;
    s->nlisten = cfg->nlisten;
    memcpy(s->listen, cfg->listen, sizeof s->listen);
    s->fd_inherited = s->nlisten > 0 && s->listen[0].fd >= 0;
    for (int i = 0; i < s->nlisten; i++) {
        tls |= s->listen[i].tls;
        if (s->listen[i].fd < 0 && rill_listen_bind(&s->listen[i], backlog, err, errlen) != 0)
            return -1;
    }
    if (tls && !(s->tls = rill_tls_new(cfg->tls_cert, cfg->tls_key, err, errlen)))
        return -1;
    s->http = evhttp_new(s->w->base);
    s->https = tls ? evhttp_new(s->w->base) : NULL;
    if (!s->http || (tls && !s->https)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    configure(s, s->http, cfg);
    if (s->https)
        configure(s, s->https, cfg);
    return 0;
}

struct rill_server *rill_server_start(struct rill_worker *w, const struct rill_server_config *cfg,
                                      char *err, size_t errlen)
{
    struct rill_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->w = w;
    s->grace = cfg->grace;
    s->pid_file = cfg->pid_file;
    if (load_refs(s, err, errlen) != 0 || open_listeners(s, cfg, cfg->backlog, err, errlen) != 0)
        goto fail;
    watch_signals(s);
    struct rill_conns_config ccfg = {.max_header_bytes = cfg->max_header_bytes,
                                     .request_timeout = cfg->request_timeout,
                                     .idle_timeout = cfg->keepalive_timeout,
                                     .header_timeout = cfg->header_timeout,
                                     .min_rate = cfg->min_rate,
                                     .max_connections = cfg->max_connections};
    /* without its gate no connection may be served: an https one would be read as plain */
    if (!(s->conns = rill_conns_new(w->base, &ccfg))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rill_conns_serve(s->conns, s->http, NULL);
    if (s->https)
        rill_conns_serve(s->conns, s->https, s->tls);
    rill_conns_on_close(s->conns, on_conn_closed, s);
    w->server = s;
    rill_metrics_start(w);
    if (s->fd_inherited)
        return s; /* the master says when: rill_server_accept */
    if (rill_server_accept(s, err, errlen) != 0)
        goto fail;
    for (int i = 0; i < s->nlisten; i++)
        rill_listen_announce(&s->listen[i]);
    return s;
fail:
    rill_server_free(s);
    return NULL;
}

int rill_server_accept(struct rill_server *s, char *err, size_t errlen)
{
    struct evconnlistener *levs[RILL_MAX_LISTENS];
    if (s->accepting || s->draining || s->retiring)
        return 0;
    for (int i = 0; i < s->nlisten; i++) {
        struct evhttp *http = s->listen[i].tls ? s->https : s->http;
        s->bound[i] = evhttp_accept_socket_with_handle(http, s->listen[i].fd);
        if (!s->bound[i]) {
            snprintf(err, errlen, "cannot accept on the listening socket");
            s->listen[i].fd = -1; /* libevent may have closed it: a leak, never a double close */
            return -1;            /* rill_server_free closes what was bound */
        }
        levs[i] = evhttp_bound_socket_get_listener(s->bound[i]);
    }
    s->accepting = 1;
    rill_conns_listen(s->conns, levs, s->nlisten); /* EMFILE: pauses */
    return 0;
}

void rill_server_run(struct rill_server *s)
{
    event_base_dispatch(s->w->base);
}

int rill_server_connections(const struct rill_server *s)
{
    return s->conns ? rill_conns_count(s->conns) : 0;
}

void rill_server_free(struct rill_server *s)
{
    rill_metrics_stop();
    rill_background_stop_all(); /* also when the server never started: the app's tasks end */
    if (!s)
        return;
    stop_all(s, 0, RILL_END_SHUTDOWN);
    rill_lean_close_all(); /* what stopping could not flush in time: their clients are cut off */
    /* shutting down already: a late signal must not kill the cleanup */
    rill_signal_events_free(s->signals, NSIGNALS);
    signal(SIGINT, SIG_IGN); /* had no event with an inherited socket */
    if (s->grace_timer)
        event_free(s->grace_timer);
    if (s->drain_timer)
        event_free(s->drain_timer);
    if (s->idle_sweep)
        event_free(s->idle_sweep);
    rill_conns_listen(s->conns, NULL, 0); /* evhttp_free frees the listeners */
    for (int i = 0; i < s->nlisten; i++)
        if (!s->bound[i] && !s->fd_inherited && s->listen[i].fd >= 0)
            close(s->listen[i].fd); /* bound, never accepted on */
    if (s->conns)
        rill_conns_on_close(s->conns, NULL, NULL); /* the loop is over */
    if (s->http)
        evhttp_free(s->http); /* closes idle keep-alive connections */
    if (s->https)
        evhttp_free(s->https);
    rill_conns_free(s->conns);
    s->conns = NULL;
    rill_tls_free(s->tls); /* after the connections: each SSL holds its own reference */
    rill_tail_shutdown();
    rill_hub_shutdown(s->w->L);
    rill_gz_shutdown();
    while (s->live) { /* requests evhttp still held are gone with it */
        struct rill_request *r = s->live;
        r->gone = 1;
        r->req = NULL;
        rill_outcome_ends(&r->out, RILL_END_SHUTDOWN);
        request_free(r);
    }
    s->w->server = NULL;
    free(s);
}
