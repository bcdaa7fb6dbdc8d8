/* SPDX-License-Identifier: MIT */
/*
 * rill.fetch(url, opts): an HTTP/1.1 request to an upstream, as an effect.
 *
 * Our own client on a bufferevent rather than evhttp's: the connect error is
 * the socket's own (refused, unreachable), DNS is a step of its own, body
 * bytes reach Lua as they arrive (httpresp.c never holds a chunk), and
 * pausing the upstream is just bufferevent_disable (notes/evhttp.md Q7 lists
 * the evhttp client's pitfalls we avoid).
 *
 * Lifetime: the object is a userdata, valid (closed) before it acquires
 * anything. It is a resource of the task that opened it, closed when that
 * task ends, so an abandoned or cancelled fetch closes its connection. A
 * reader parks its task in f->wait; callbacks wake it and the reader's
 * continuation looks at the state again.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <zlib.h>

#include "effects.h"
#include "httpresp.h"
#include "headscan.h"
#include "luanum.h"
#include "metrics.h"
#include "replyhead.h"
#include "request.h"
#include "sse_parse.h"
#include "sched.h"

#define FETCH_MT   "rill.fetch"
#define FETCH_HIGH (256 * 1024) /* buffered body bytes above which the upstream is paused */
/* A streamed request body: unsent bytes past which its function is not called, and when it is
 * again */
#define FETCH_SEND_HIGH (64 * 1024)
#define FETCH_SEND_LOW  (16 * 1024)
#define FETCH_LOW       (64 * 1024)
#define FETCH_MAX_READ  (8 * 1024 * 1024) /* default cap of :read() */
#define FETCH_MAX_LIMIT INT_MAX           /* largest max_body and max_line: they print as %d */

enum phase { P_CLOSED, P_RESOLVING, P_CONNECTING, P_HEAD, P_BODY, P_DONE, P_FAILED };

struct fetch {
    struct rill_resource res; /* first member */
    struct rill_worker *w;
    enum phase phase;
    struct rill_waiter wait; /* a reader waiting for bytes, woken never inside a parse */
    struct evdns_getaddrinfo_request *dns_req;
    struct evutil_addrinfo *addrs, *addr; /* resolved addresses, the one being tried */
    struct bufferevent *bev;
    struct event *timer;
    struct evbuffer *body; /* received, not yet read */
    struct rill_resp_parser parser;
    double idle_timeout;
    size_t max_read;
    int paused;
    int self_ref; /* registry ref while the handler waits on the head (keeps the userdata) */
    char error[256];
    const char *code;
    char host[256];
    int port;
    int tls;                     /* https */
    SSL_CTX *ssl_ctx;            /* set for https: the default store, or opts.ca_file's */
    int insecure;                /* opts.insecure: no certificate check (tests only) */
    struct evbuffer *request;    /* the bytes to send once connected */
    int decompress;              /* opts.decompress: ask for gzip and decode it */
    int poolable;                /* plain http, idempotent method: the connection may be reused */
    int reused;                  /* this request went out on a pooled connection */
    int got_bytes;               /* the upstream sent something for this request */
    struct rill_sse_parser *sse; /* for :events(), created on first use */
    lua_Integer sse_head, sse_tail; /* parsed events queued in uservalue.sse_queue */
    int gzipped;                    /* the response is Content-Encoding: gzip */
    int gzip_end;                   /* the gzip stream is complete */
    z_stream z;
    struct timespec t0;       /* when it started, for the metrics */
    struct rill_outcome *out; /* its request's, for the access log's upstream time (NULL: none) */
    int counted;              /* its outcome counted (once: at its head or its failure) */
    int sending;              /* opts.body is a function still giving pieces (sent chunked) */
    double timeout;           /* opts.timeout: to the head, and between two pieces sent */
};

static struct evdns_base *dns_base(struct rill_worker *w)
{
    static struct evdns_base *dns;
    if (!dns)
        dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    return dns;
}

/* ---- state changes ------------------------------------------------------- */

/* The reader runs Lua, which may close this fetch: never from inside a parse. */
static void wake(struct fetch *f)
{
    rill_waiter_wake(&f->wait);
}

/* ---- idle connections ----------------------------------------------------------------
 * Sequential requests to one plain-http upstream reuse its connection. An idle
 * connection must stay silent: any byte, EOF or error drops it, and so does
 * its idle timer.
 */

#define POOL_SLOTS        64
#define POOL_IDLE_SECONDS 15.0

struct idle_conn {
    struct bufferevent *bev;
    struct event timer;
    unsigned long parked; /* when, in parking order: a full pool drops the oldest */
    char key[280];
};

static unsigned long parked_count;

static struct idle_conn pool[POOL_SLOTS];

static void pool_drop(struct idle_conn *c)
{
    event_del(&c->timer);
    bufferevent_free(c->bev);
    c->bev = NULL;
}

static void on_idle_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    pool_drop(arg);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    pool_drop(arg);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pool_drop(arg);
}

static void pool_key(const struct fetch *f, char *key, size_t cap)
{
    snprintf(key, cap, "%s|%d", f->host, f->port);
}

/* Parks f's connection in a free slot, or in the oldest one's place. */
static void pool_put(struct fetch *f)
{
    struct idle_conn *c = &pool[0];
    for (int i = 0; i < POOL_SLOTS && c->bev; i++)
        if (!pool[i].bev || pool[i].parked < c->parked)
            c = &pool[i];
    if (c->bev)
        pool_drop(c);
    c->bev = f->bev;
    c->parked = ++parked_count;
    pool_key(f, c->key, sizeof c->key);
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    bufferevent_enable(c->bev, EV_READ);
    evtimer_assign(&c->timer, f->w->base, on_idle_timeout, c);
    rill_timer_add(&c->timer, POOL_IDLE_SECONDS);
}

int rill_fetch_idle_connections(void)
{
    int n = 0;
    for (int i = 0; i < POOL_SLOTS; i++)
        n += pool[i].bev != NULL;
    return n;
}

static struct bufferevent *pool_take(const struct fetch *f)
{
    char key[280];
    pool_key(f, key, sizeof key);
    for (int i = 0; i < POOL_SLOTS; i++) {
        struct idle_conn *c = &pool[i];
        if (c->bev && strcmp(c->key, key) == 0) {
            struct bufferevent *bev = c->bev;
            event_del(&c->timer);
            c->bev = NULL;
            return bev;
        }
    }
    return NULL;
}

static int reusable(struct fetch *f)
{
    return f->poolable && f->phase == P_DONE && rill_resp_reusable(&f->parser) &&
           evbuffer_get_length(bufferevent_get_input(f->bev)) == 0;
}

/* Frees the connection side (or parks the connection); the userdata stays until collected. */
static void release_io(struct fetch *f)
{
    if (f->dns_req)
        evdns_getaddrinfo_cancel(f->dns_req); /* its callback runs now, with CANCEL */
    f->dns_req = NULL;
    if (f->addrs)
        evutil_freeaddrinfo(f->addrs);
    f->addrs = f->addr = NULL;
    if (f->bev && reusable(f))
        pool_put(f);
    else if (f->bev)
        bufferevent_free(f->bev);
    f->bev = NULL;
    if (f->timer)
        event_free(f->timer);
    f->timer = NULL;
    if (f->request)
        evbuffer_free(f->request);
    f->request = NULL;
}

static void fail(struct fetch *f, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The fetch's outcome for the metrics: its answer's head came, or it failed before. */
static void count_outcome(struct fetch *f, const char *code)
{
    if (f->counted)
        return;
    f->counted = 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long us =
        (long long)(now.tv_sec - f->t0.tv_sec) * 1000000 + (now.tv_nsec - f->t0.tv_nsec) / 1000;
    rill_metrics_fetch(rill_metrics_fetch_outcome(code), us);
    struct rill_outcome *o = f->out; /* set while its request lives: resources close first */
    if (o) {
        unsigned long long sum = (unsigned long long)o->upstream_us + (unsigned long long)us;
        o->upstream_us = sum > UINT_MAX ? UINT_MAX : (unsigned)sum;
        o->fetched = 1;
    }
}

static void fail(struct fetch *f, const char *code, const char *fmt, ...)
{
    if (f->phase == P_FAILED || f->phase == P_CLOSED)
        return;
    count_outcome(f, code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    va_end(ap);
    f->code = code;
    f->phase = P_FAILED;
    release_io(f);
    wake(f);
}

static void arm_timer(struct fetch *f, double seconds)
{
    if (f->timer && seconds > 0)
        rill_timer_add(f->timer, seconds);
    else if (f->timer)
        evtimer_del(f->timer);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct fetch *f = arg;
    (void)fd, (void)what;
    if (f->phase == P_BODY)
        fail(f, "timeout", "%s:%d: no data for %g s", f->host, f->port, f->idle_timeout);
    else
        fail(f, "timeout", "%s:%d: no response in time", f->host, f->port);
}

/* ---- parser callbacks -------------------------------------------------------- */

static void on_resp_header(void *arg, const char *n, size_t nl, const char *v, size_t vl);

/* The headers describe the gzip bytes; the reader gets the decoded ones. */
static void start_gunzip(struct fetch *f)
{
    lua_State *L = f->w->L;
    if (inflateInit2(&f->z, 16 + MAX_WBITS) != Z_OK) {
        fail(f, "protocol", "%s:%d: cannot start gzip decoding", f->host, f->port);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->self_ref);
    lua_getiuservalue(L, -1, 1);
    lua_getfield(L, -1, "headers");
    lua_pushnil(L);
    lua_setfield(L, -2, "content-encoding");
    lua_pushnil(L);
    lua_setfield(L, -2, "content-length");
    lua_pop(L, 3);
}

static void on_resp_head(void *arg, int status)
{
    struct fetch *f = arg;
    (void)status;
    if (f->gzipped)
        start_gunzip(f);
    count_outcome(f, "ok");
    f->phase = P_BODY;
    arm_timer(f, f->idle_timeout);
    wake(f);
}

/* Decodes as much as the bytes at hand allow: a flushed gzip block comes out whole. */
static int gunzip(struct fetch *f, const char *data, size_t len)
{
    f->z.next_in = (Bytef *)data;
    f->z.avail_in = (uInt)len;
    for (;;) {
        struct evbuffer_iovec v;
        evbuffer_reserve_space(f->body, 16384, &v, 1);
        f->z.next_out = v.iov_base;
        f->z.avail_out = (uInt)v.iov_len;
        int rc = inflate(&f->z, Z_NO_FLUSH);
        v.iov_len -= f->z.avail_out;
        evbuffer_commit_space(f->body, &v, 1);
        if (rc == Z_STREAM_END && f->z.avail_in > 0) {
            inflateReset(&f->z); /* another gzip member follows */
            continue;
        }
        if (rc == Z_STREAM_END) {
            f->gzip_end = 1;
            return 0;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            fail(f, "protocol", "%s:%d: gzip: %s", f->host, f->port,
                 f->z.msg ? f->z.msg : "bad data");
            return -1;
        }
        if (f->z.avail_in == 0 && f->z.avail_out > 0)
            return 0;
    }
}

static void on_resp_body(void *arg, const char *data, size_t len)
{
    struct fetch *f = arg;
    if (f->phase != P_BODY)
        return; /* failed during this feed */
    if (!f->gzipped)
        evbuffer_add(f->body, data, len);
    else if (gunzip(f, data, len) != 0)
        return;
    if (!f->paused && evbuffer_get_length(f->body) > FETCH_HIGH && f->bev) {
        bufferevent_disable(f->bev, EV_READ); /* the reader is behind: stop reading upstream */
        f->paused = 1;
    }
    wake(f);
}

static void on_resp_done(void *arg)
{
    struct fetch *f = arg;
    if (f->gzipped && !f->gzip_end) {
        fail(f, "truncated", "%s:%d: the gzip stream ended early", f->host, f->port);
        return;
    }
    f->phase = P_DONE; /* feed() then releases or parks the connection */
    wake(f);
}

static const struct rill_resp_handler resp_handler = {
    on_resp_header,
    on_resp_head,
    on_resp_body,
    on_resp_done,
};

/* ---- socket callbacks --------------------------------------------------------- */

/* Parses what arrived; a complete response then releases the connection. */
static void feed(struct fetch *f, struct evbuffer *in)
{
    while (evbuffer_get_length(in) > 0 && (f->phase == P_HEAD || f->phase == P_BODY)) {
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        size_t n = v.iov_len;
        int rc = rill_resp_feed(&f->parser, v.iov_base, n);
        evbuffer_drain(in,
                       n); /* still valid: a freed bufferevent lives until its callback returns */
        if (rc != 0) {
            fail(f, "protocol", "%s:%d: %s", f->host, f->port, f->parser.error);
            return;
        }
    }
    if (f->phase == P_DONE)
        release_io(f);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct fetch *f = arg;
    f->got_bytes = 1;
    if (f->phase == P_BODY)
        arm_timer(f, f->idle_timeout);
    feed(f, bufferevent_get_input(bev));
}

static const char *errno_code(int err)
{
    switch (err) {
    case ECONNREFUSED: return "refused";
    case ETIMEDOUT: return "timeout";
    case EHOSTUNREACH:
    case ENETUNREACH: return "unreachable";
    default: return "reset";
    }
}

/* Sends the request (a copy: a retry may need it again). */
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void send_request(struct fetch *f)
{
    size_t n = evbuffer_get_length(f->request);
    f->phase = P_HEAD;
    bufferevent_write(f->bev, evbuffer_pullup(f->request, -1), n);
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    if (f->sending) { /* never retried (not pooled): the rest goes straight to the connection */
        evbuffer_drain(f->request, n);
        bufferevent_setcb(f->bev, on_read, on_write, on_event, f);
        bufferevent_setwatermark(f->bev, EV_WRITE, FETCH_SEND_LOW, 0);
        wake(f); /* a body function waiting for room */
    }
}

/* The upstream took most of what a streamed body had sent: its function may give more. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct fetch *f = arg;
    (void)bev;
    if (f->sending)
        wake(f);
}

static void start_fresh(struct fetch *f);

static void retry_fresh(struct fetch *f)
{
    bufferevent_free(f->bev);
    f->bev = NULL;
    f->reused = 0;
    start_fresh(f);
}

/* A TLS error (handshake, certificate): reports it and returns 1. */
static int tls_failed(struct fetch *f, struct bufferevent *bev)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (!e)
        return 0;
    if (verify != X509_V_OK) {
        fail(f, "tls", "tls %s:%d: certificate: %s", f->host, f->port,
             X509_verify_cert_error_string(verify));
    } else {
        char buf[160];
        ERR_error_string_n(e, buf, sizeof buf);
        fail(f, "tls", "tls %s:%d: %s", f->host, f->port, buf);
    }
    while (bufferevent_get_openssl_error(bev))
        ; /* the rest of the queue belongs to this failure too */
    return 1;
}

static int try_next_address(struct fetch *f);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct fetch *f = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (what & BEV_EVENT_CONNECTED) {
        send_request(f);
        return;
    }
    if (f->reused && !f->got_bytes && f->phase == P_HEAD) {
        retry_fresh(f); /* the server had closed the idle connection meanwhile */
        return;
    }
    if (f->tls && tls_failed(f, bev))
        return;
    if (f->phase == P_CONNECTING && try_next_address(f))
        return;
    if (f->phase == P_CONNECTING) {
        fail(f, errno_code(err), "connect %s:%d: %s", f->host, f->port,
             evutil_socket_error_to_string(err));
        return;
    }
    if (what & BEV_EVENT_EOF) {
        feed(f, bufferevent_get_input(bev));
        if (f->bev && rill_resp_eof(&f->parser) != 0)
            fail(f, "truncated", "%s:%d: %s", f->host, f->port, f->parser.error);
        else if (f->bev)
            release_io(f); /* a close-delimited body ended */
        return;
    }
    fail(f, errno_code(err), "%s:%d: %s", f->host, f->port, evutil_socket_error_to_string(err));
}

/*
 * An SSL for f->host: SNI for names, and unless insecure, the peer's chain
 * checked against the store and its name (or IP address) against the host.
 */
static SSL *new_ssl(struct fetch *f)
{
    SSL *ssl = SSL_new(f->ssl_ctx);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, f->host, ip) == 1 || inet_pton(AF_INET6, f->host, ip) == 1;
    if (!ssl)
        return NULL;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, f->host);
    if (f->insecure)
        return ssl;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    if (is_ip)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), f->host);
    else
        SSL_set1_host(ssl, f->host);
    return ssl;
}

static struct bufferevent *new_bev(struct fetch *f)
{
    if (!f->tls)
        return bufferevent_socket_new(f->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = new_ssl(f);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        f->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* servers that skip close_notify */
    return bev;
}

static void connect_to(struct fetch *f, const struct sockaddr *sa, int salen)
{
    f->phase = P_CONNECTING;
    f->bev = new_bev(f);
    if (!f->bev) {
        fail(f, "tls", "%s:%d: cannot set up TLS", f->host, f->port);
        return;
    }
    bufferevent_setcb(f->bev, on_read, NULL, on_event, f);
    if (bufferevent_socket_connect(f->bev, sa, salen) != 0) {
        int err = EVUTIL_SOCKET_ERROR();
        fail(f, errno_code(err), "connect %s:%d: %s", f->host, f->port,
             evutil_socket_error_to_string(err));
    }
}

static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg)
{
    struct fetch *f = arg;
    if (result == EVUTIL_EAI_CANCEL)
        return; /* release_io cancelled us: f may be going away */
    f->dns_req = NULL;
    if (result != 0 || !ai) {
        fail(f, "dns", "resolve %s: %s", f->host, evutil_gai_strerror(result));
        return;
    }
    f->addrs = f->addr = ai;
    connect_to(f, ai->ai_addr, (int)ai->ai_addrlen);
}

/*
 * A name can resolve to several addresses ("localhost" to ::1 and
 * 127.0.0.1): when a connect fails, the next one is tried. Returns 1 if so.
 */
static int try_next_address(struct fetch *f)
{
    if (!f->addr || !f->addr->ai_next)
        return 0;
    f->addr = f->addr->ai_next;
    bufferevent_free(f->bev);
    f->bev = NULL;
    connect_to(f, f->addr->ai_addr, (int)f->addr->ai_addrlen);
    return 1;
}

/* Starts DNS (or connects at once to a numeric address). */
static void start_fresh(struct fetch *f)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char numeric[300];
    snprintf(numeric, sizeof numeric, strchr(f->host, ':') ? "[%s]:%d" : "%s:%d", f->host, f->port);
    if (evutil_parse_sockaddr_port(numeric, (struct sockaddr *)&ss, &len) == 0) {
        connect_to(f, (struct sockaddr *)&ss, len);
        return;
    }
    struct evutil_addrinfo hints = {0};
    char port[8];
    snprintf(port, sizeof port, "%d", f->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    f->phase = P_RESOLVING;
    f->dns_req = evdns_getaddrinfo(dns_base(f->w), f->host, port, &hints, on_resolved, f);
}

/* On an idle pooled connection when there is one, else a new one. */
static void start(struct fetch *f)
{
    clock_gettime(CLOCK_MONOTONIC, &f->t0);
    struct bufferevent *bev = f->poolable ? pool_take(f) : NULL;
    if (!bev) {
        start_fresh(f);
        return;
    }
    f->bev = bev;
    f->reused = 1;
    bufferevent_setcb(bev, on_read, NULL, on_event, f);
    send_request(f);
}

/* ---- the Lua object ------------------------------------------------------------ */

static struct fetch *check_fetch(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, FETCH_MT);
}

static void fetch_close_res(struct rill_resource *res)
{
    struct fetch *f = (struct fetch *)res;
    if (f->t0.tv_sec && !f->counted && f->phase != P_FAILED)
        count_outcome(f, "cancelled"); /* closed before its head came: counted as other */
    release_io(f);
    if (f->body)
        evbuffer_free(f->body);
    f->body = NULL;
    if (f->phase != P_FAILED)
        f->phase = P_CLOSED;
    if (f->self_ref != LUA_NOREF)
        luaL_unref(f->w->L, LUA_REGISTRYINDEX, f->self_ref);
    f->self_ref = LUA_NOREF;
    rill_waiter_clear(&f->wait);
    if (f->ssl_ctx)
        SSL_CTX_free(f->ssl_ctx);
    f->ssl_ctx = NULL;
    if (f->gzipped)
        inflateEnd(&f->z);
    f->gzipped = 0;
    if (f->sse)
        rill_sse_free(f->sse);
    f->sse = NULL;
    f->out = NULL; /* its request may go now */
}

/* __gc, __close and up:close(): idempotent. */
static int fetch_close(lua_State *L)
{
    struct fetch *f = check_fetch(L, 1);
    rill_resource_remove(&f->res);
    fetch_close_res(&f->res);
    return 0;
}

static void on_resp_header(void *arg, const char *n, size_t nl, const char *v, size_t vl)
{
    struct fetch *f = arg;
    lua_State *L = f->w->L;
    if (f->decompress && nl == 16 && strncasecmp(n, "content-encoding", nl) == 0 &&
        ((vl == 4 && strncasecmp(v, "gzip", 4) == 0) ||
         (vl == 6 && strncasecmp(v, "x-gzip", 6) == 0)))
        f->gzipped = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->self_ref);
    lua_getiuservalue(L, -1, 1);
    lua_getfield(L, -1, "headers"); /* ud uv headers */
    luaL_Buffer b;
    char *low = luaL_buffinitsize(L, &b, nl);
    for (size_t i = 0; i < nl; i++)
        low[i] = (char)((n[i] >= 'A' && n[i] <= 'Z') ? n[i] - 'A' + 'a' : n[i]);
    luaL_pushresultsize(&b, nl);
    lua_pushlstring(L, v, vl);
    rill_table_add_multi(L, lua_absindex(L, -3));
    lua_pop(L, 3);
}

/* Parks the running task on f; k continues when a callback wakes it. what names the reader. */
static int wait_on(lua_State *L, struct fetch *f, lua_KFunction k, const char *what)
{
    rill_task_check_wait(L, what); /* before reading upstream again */
    if (f->paused && f->bev) {     /* a reader that needs more: read upstream again */
        bufferevent_enable(f->bev, EV_READ);
        f->paused = 0;
    }
    return rill_waiter_park(L, &f->wait, k, what);
}

/* After a reader took bytes: read upstream again once the backlog is small. */
static void consumed(struct fetch *f)
{
    if (f->paused && f->bev && evbuffer_get_length(f->body) < FETCH_LOW) {
        bufferevent_enable(f->bev, EV_READ);
        f->paused = 0;
    }
}

static void push_taken(lua_State *L, struct fetch *f, size_t n)
{
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    evbuffer_remove(f->body, p, n);
    luaL_pushresultsize(&b, n);
    consumed(f);
}

/* Readers raise on failure, so a relayed stream is never cut short silently. */
static int raise_failure(lua_State *L, struct fetch *f)
{
    if (f->phase == P_FAILED)
        return luaL_error(L, "fetch failed (%s): %s", f->code, f->error);
    return luaL_error(L, "attempt to read a closed fetch");
}

/* ---- rill.fetch ------------------------------------------------------------------ */

static int fetch_head_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, 3); /* url, opts, f */
    (void)status, (void)ctx;
    if (f->phase == P_FAILED || f->phase == P_CLOSED) {
        lua_pushnil(L);
        lua_pushstring(L, f->phase == P_FAILED ? f->error : "closed");
        lua_pushstring(L, f->phase == P_FAILED ? f->code : "closed");
        return 3;
    }
    if (f->phase < P_BODY)
        return wait_on(L, f, fetch_head_k, "rill.fetch");
    lua_getiuservalue(L, 3, 1);
    lua_pushinteger(L, f->parser.status);
    lua_setfield(L, -2, "status");
    lua_pop(L, 1);
    lua_settop(L, 3);
    return 1;
}

/* ---- a streamed request body ------------------------------------------------------------ */

/* What a streamed body has given and the upstream has not taken yet. */
static size_t unsent(struct fetch *f)
{
    if (f->bev && f->phase >= P_HEAD)
        return evbuffer_get_length(bufferevent_get_output(f->bev));
    return evbuffer_get_length(f->request);
}

static void send_bytes(struct fetch *f, const void *p, size_t n)
{
    if (f->bev && f->phase >= P_HEAD)
        bufferevent_write(f->bev, p, n);
    else
        evbuffer_add(f->request, p, n); /* sent once connected */
}

/* The piece the body function returned (on the top) goes out as a chunk; 0 after the last. */
static int take_piece(lua_State *L, struct fetch *f)
{
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TSTRING)
        return luaL_error(L,
                          "bad argument #2 to 'fetch' (the body function returned a %s, "
                          "expected a string or nil)",
                          luaL_typename(L, -1));
    if (f->phase == P_FAILED || f->phase == P_CLOSED || f->phase >= P_BODY) {
        f->sending = 0; /* failed, or answered early: what is left is not sent */
        return 0;
    }
    if (t == LUA_TNIL) {
        send_bytes(f, "0\r\n\r\n", 5);
        f->sending = 0;
        return 0;
    }
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    if (n > 0) { /* an empty piece would be the last chunk */
        char size[24];
        int len = snprintf(size, sizeof size, "%zx\r\n", n);
        send_bytes(f, size, (size_t)len);
        send_bytes(f, p, n);
        send_bytes(f, "\r\n", 2);
        arm_timer(f, f->timeout); /* progress: the timeout runs from the last piece */
    }
    return 1;
}

static int send_body_k(lua_State *L, int status, lua_KContext ctx);

/* The body function returned after waiting (an effect): its piece is on the top. */
static int piece_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, 3);
    (void)status, (void)ctx;
    if (!take_piece(L, f))
        return fetch_head_k(L, LUA_OK, 0);
    return send_body_k(L, LUA_OK, 0);
}

/*
 * Calls the body function (stack: url, opts, f, fn) for piece after piece,
 * each sent as a chunk, while the upstream keeps up: past FETCH_SEND_HIGH
 * unsent bytes it waits for the connection to drain. Then the answer's head.
 * The function may wait itself (req:body_reader() does): it runs in the
 * handler's coroutine, and each call's continuation is piece_k.
 */
static int send_body_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, 3);
    (void)status, (void)ctx;
    for (;;) {
        lua_settop(L, 4);
        if (!f->sending || f->phase == P_FAILED || f->phase == P_CLOSED || f->phase >= P_BODY) {
            f->sending = 0; /* answered early, or failed: the rest is not sent */
            return fetch_head_k(L, LUA_OK, 0);
        }
        if (unsent(f) > FETCH_SEND_HIGH)
            return wait_on(L, f, send_body_k, "rill.fetch");
        lua_pushvalue(L, 4);
        lua_callk(L, 0, 1, 0, piece_k);
        if (!take_piece(L, f))
            return fetch_head_k(L, LUA_OK, 0);
    }
}

/* A duration in the options (argument #2): finite, 0 (none) to RILL_MAX_SECONDS (luanum.h). */
static double opt_seconds(lua_State *L, const char *field, double dflt)
{
    return rill_opt_field_range(L, 2, field, dflt, 0, RILL_MAX_SECONDS);
}

/* A field value for the upstream request: no control byte but HTAB (a CRLF would add a header). */
static const char *request_value(lua_State *L, const char *name, int vidx)
{
    size_t len;
    int t = lua_type(L, vidx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "bad argument #2 to 'fetch' (header '%s' has a %s value)", name,
                   luaL_typename(L, vidx));
    const char *v = lua_tolstring(L, vidx, &len); /* a value, never the key next() needs */
    if (rill_value_bad_byte(v, len) >= 0)
        luaL_error(L, "bad argument #2 to 'fetch' (header '%s' has a control character)", name);
    return v;
}

static void check_name(lua_State *L, int kidx)
{
    if (lua_type(L, kidx) != LUA_TSTRING) /* lua_tostring would convert the key: next fails */
        luaL_error(L, "bad argument #2 to 'fetch' (a header name must be a string, got %s)",
                   luaL_typename(L, kidx));
    size_t len;
    const char *k = lua_tolstring(L, kidx, &len);
    if (!rill_is_token(k, len))
        luaL_error(L, "bad argument #2 to 'fetch' (invalid header name '%s')", k);
}

/*
 * opts.headers onto the request: a value or a list of values per name
 * (req.headers can be passed on as they are). The framing and hop-by-hop
 * fields are rill's to write for this request, so they are not passed on.
 */
enum { HAS_HOST = 1, HAS_UA = 2, HAS_AE = 4, HAS_TRACEPARENT = 8, HAS_REQUEST_ID = 16 };

/* Which of the fields rill adds when the handler does not the name k is. */
static unsigned field_bit(const char *k)
{
    static const struct {
        const char *name;
        unsigned bit;
    } fields[] = {{"host", HAS_HOST},
                  {"user-agent", HAS_UA},
                  {"accept-encoding", HAS_AE},
                  {"traceparent", HAS_TRACEPARENT},
                  {"x-request-id", HAS_REQUEST_ID}};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strcasecmp(k, fields[i].name) == 0)
            return fields[i].bit;
    return 0;
}

static void add_request_headers(lua_State *L, struct fetch *f, unsigned *has)
{
    int t = lua_getfield(L, 2, "headers");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "bad argument #2 to 'fetch' (headers must be a table, got %s)",
                   luaL_typename(L, -1));
    int headers = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, headers)) {
        check_name(L, -2);
        const char *k = lua_tostring(L, -2);
        int list = lua_type(L, -1) == LUA_TTABLE;
        lua_Integer n = list ? (lua_Integer)lua_rawlen(L, -1) : 1;
        if (n == 0 || (n > 1 && strcasecmp(k, "host") == 0)) /* no line, or two Hosts */
            luaL_error(L, "bad argument #2 to 'fetch' (header '%s' needs %s)", k,
                       n ? "one value" : "a value or a non-empty list");
        for (lua_Integer i = 1; i <= n; i++) {
            if (list)
                lua_rawgeti(L, -1, i);
            const char *v = request_value(L, k, lua_gettop(L));
            if (!rill_is_framing_field(k))
                evbuffer_add_printf(f->request, "%s: %s\r\n", k, v);
            if (list)
                lua_pop(L, 1);
        }
        *has |= field_bit(k);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/*
 * Inside a request, the trace context goes upstream: a traceparent with the
 * request's trace id and a new span id, and x-request-id, unless the handler
 * set them. In rill.run there is no request, so nothing is added.
 */
static void add_trace_headers(struct fetch *f, struct rill_task *t, unsigned has)
{
    if (!t->owner_is_request)
        return;
    struct rill_request *r = (struct rill_request *)t;
    if (!(has & HAS_TRACEPARENT)) {
        char tp[56];
        rill_request_traceparent(r, tp);
        evbuffer_add_printf(f->request, "traceparent: %s\r\n", tp);
    }
    const char *id = rill_request_id(r);
    if (!(has & HAS_REQUEST_ID) && strcmp(id, "-") != 0)
        evbuffer_add_printf(f->request, "x-request-id: %s\r\n", id);
}

/* The request line, headers and body, from the URL and opts (stack: url, opts). */
static void build_request(lua_State *L, struct fetch *f, struct rill_task *task, const char *target,
                          int head_only)
{
    const char *method = "GET";
    int t = lua_getfield(L, 2, "method");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        luaL_error(L, "bad argument #2 to 'fetch' (method must be a string, got %s)",
                   luaL_typename(L, -1));
    if (t == LUA_TSTRING)
        method = lua_tostring(L, -1);
    int upper = *method != '\0';
    for (const char *c = method; *c; c++)
        upper &= *c >= 'A' && *c <= 'Z';
    if (!upper)
        luaL_error(L, "bad argument #2 to 'fetch' (method must be upper-case letters, got '%s')",
                   method);
    size_t blen = 0;
    const char *body = NULL;
    t = lua_getfield(L, 2, "body");
    if (t != LUA_TNIL && t != LUA_TSTRING && t != LUA_TFUNCTION)
        luaL_error(L, "bad argument #2 to 'fetch' (body must be a string or a function, got %s)",
                   luaL_typename(L, -1));
    if (t == LUA_TSTRING)
        body = lua_tolstring(L, -1, &blen);
    f->sending = t == LUA_TFUNCTION;
    f->request = evbuffer_new();
    evbuffer_add_printf(f->request, "%s %s HTTP/1.1\r\n", method, target);
    unsigned has = 0;
    add_request_headers(L, f, &has);
    add_trace_headers(f, task, has);
    if (!(has & HAS_HOST))
        evbuffer_add_printf(f->request,
                            (f->port == (f->tls ? 443 : 80) ? "Host: %s\r\n" : "Host: %s:%d\r\n"),
                            f->host, f->port);
    if (!(has & HAS_UA))
        evbuffer_add_printf(f->request, "User-Agent: rill/%s\r\n", RILL_VERSION);
    if (f->decompress && !(has & HAS_AE))
        evbuffer_add_printf(f->request, "Accept-Encoding: gzip\r\n");
    if (body)
        evbuffer_add_printf(f->request, "Content-Length: %zu\r\n", blen);
    if (f->sending)
        evbuffer_add_printf(f->request, "Transfer-Encoding: chunked\r\n");
    static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", NULL};
    for (int i = 0; idempotent[i] && !f->tls && !f->sending; i++) /* a body read once: no retry */
        f->poolable |= strcmp(method, idempotent[i]) == 0;
    evbuffer_add_printf(f->request, f->poolable ? "\r\n" : "Connection: close\r\n\r\n");
    if (body)
        evbuffer_add(f->request, body, blen);
    lua_pop(L, 2); /* method, body */
    rill_resp_init(&f->parser, &resp_handler, f, head_only || strcmp(method, "HEAD") == 0);
}

/* Host, port and target of an http URL; raises naming argument #1. */
static const char *parse_url(lua_State *L, struct fetch *f, const char *url)
{
    struct evhttp_uri *u = evhttp_uri_parse(url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    if (!u || !scheme || !host || !*host) {
        if (u)
            evhttp_uri_free(u);
        luaL_argerror(L, 1, "not an absolute http or https URL");
    }
    f->tls = strcasecmp(scheme, "https") == 0;
    if (!f->tls && strcasecmp(scheme, "http") != 0) {
        lua_pushfstring(L, "unsupported scheme '%s'", scheme);
        evhttp_uri_free(u);
        luaL_argerror(L, 1, lua_tostring(L, -1));
    }
    snprintf(f->host, sizeof f->host, "%s", host);
    f->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : f->tls ? 443 : 80;
    const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
    lua_pushfstring(L, "%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    evhttp_uri_free(u);
    return lua_tostring(L, -1);
}

static struct fetch *new_fetch(lua_State *L, struct rill_worker *w)
{
    struct fetch *f = lua_newuserdatauv(L, sizeof *f, 1);
    memset(f, 0, sizeof *f);
    f->res.close = fetch_close_res;
    f->w = w;
    f->phase = P_CLOSED;
    f->self_ref = LUA_NOREF;
    rill_waiter_init(&f->wait, w->base, NULL);
    luaL_setmetatable(L, FETCH_MT);
    lua_createtable(L, 0, 4);
    lua_newtable(L);
    luaL_setmetatable(L, "rill.headers");
    lua_setfield(L, -2, "headers");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "url");
    lua_setiuservalue(L, -2, 1);
    return f;
}

/* The system's CA store, loaded once per worker. */
static SSL_CTX *default_ctx(void)
{
    static SSL_CTX *ctx;
    if (!ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_default_verify_paths(ctx);
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    }
    return ctx;
}

/* opts.ca_file (trust this PEM file instead of the system store) and opts.insecure. */
static void tls_options(lua_State *L, struct fetch *f)
{
    f->insecure = lua_getfield(L, 2, "insecure") == LUA_TBOOLEAN && lua_toboolean(L, -1);
    if (lua_getfield(L, 2, "ca_file") == LUA_TNIL) {
        f->ssl_ctx = default_ctx();
        SSL_CTX_up_ref(f->ssl_ctx);
    } else {
        const char *path = luaL_checkstring(L, -1);
        f->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!f->ssl_ctx || SSL_CTX_load_verify_locations(f->ssl_ctx, path, NULL) != 1) {
            ERR_clear_error();
            luaL_error(L, "bad argument #2 to 'fetch' (cannot load ca_file '%s')", path);
        }
    }
    lua_pop(L, 2);
}

/* rill.fetch(url [, opts]) → response after its head, or nil, err, code. */
static int fetch_call(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    else {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    lua_settop(L, 2);
    struct rill_task *t = rill_task_check_wait(L, "rill.fetch"); /* it waits for the head */
    struct fetch *f = new_fetch(L, t->w);                        /* 3 */
    const char *target = parse_url(L, f, url);                   /* 4 */
    f->decompress = lua_getfield(L, 2, "decompress") == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    build_request(L, f, t, target, 0);
    double timeout = f->timeout = opt_seconds(L, "timeout", 30);
    f->idle_timeout = opt_seconds(L, "idle_timeout", 0);
    f->max_read = (size_t)rill_opt_field_int(L, 2, "max_body", FETCH_MAX_READ, 0, FETCH_MAX_LIMIT);
    lua_settop(L, 3);
    if (f->tls)
        tls_options(L, f);

    f->body = evbuffer_new();
    f->timer = evtimer_new(t->w->base, on_timeout, f);
    lua_pushvalue(L, 3);
    f->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rill_resource_add(t, &f->res);
    f->out = t->owner_is_request ? &((struct rill_request *)t)->out : NULL;
    arm_timer(f, timeout);
    start(f);
    if (f->sending) {
        lua_getfield(L, 2, "body"); /* 4: kept on the stack while it is called */
        return send_body_k(L, LUA_OK, 0);
    }
    return fetch_head_k(L, LUA_OK, 0);
}

/* ---- readers ------------------------------------------------------------------------ */

static int read_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, 1);
    (void)status, (void)ctx;
    size_t have = f->body ? evbuffer_get_length(f->body) : 0;
    if (have > f->max_read) {
        lua_pushnil(L);
        lua_pushfstring(L, "body larger than %d bytes", (int)f->max_read);
        lua_pushliteral(L, "too_large");
        return 3;
    }
    if (f->phase == P_DONE) {
        push_taken(L, f, have);
        return 1;
    }
    if (f->phase == P_FAILED || f->phase == P_CLOSED) {
        lua_pushnil(L);
        lua_pushstring(L, f->phase == P_FAILED ? f->error : "closed");
        lua_pushstring(L, f->phase == P_FAILED ? f->code : "closed");
        return 3;
    }
    if (f->bev && f->paused) { /* read() wants it all: no pausing */
        bufferevent_enable(f->bev, EV_READ);
        f->paused = 0;
    }
    return wait_on(L, f, read_k, "up:read()");
}

/* up:read() → the whole body, or nil, err, code. */
static int fetch_read(lua_State *L)
{
    check_fetch(L, 1);
    lua_settop(L, 1);
    return read_k(L, LUA_OK, 0);
}

static int chunks_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, lua_upvalueindex(1));
    (void)status, (void)ctx;
    size_t have = f->body ? evbuffer_get_length(f->body) : 0;
    if (have > 0) {
        push_taken(L, f, have);
        return 1;
    }
    if (f->phase == P_DONE)
        return 0;
    if (f->phase == P_FAILED || f->phase == P_CLOSED)
        return raise_failure(L, f);
    return wait_on(L, f, chunks_k, "up:chunks()");
}

static int lines_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, lua_upvalueindex(1));
    size_t max_line = (size_t)lua_tointeger(L, lua_upvalueindex(2));
    (void)status, (void)ctx;
    size_t have = f->body ? evbuffer_get_length(f->body) : 0;
    if (have > 0) {
        struct evbuffer_ptr nl = evbuffer_search(f->body, "\n", 1, NULL);
        if (nl.pos >= 0) {
            push_taken(L, f, (size_t)nl.pos + 1); /* the line with its terminator */
            return 1;
        }
        if (f->phase == P_DONE) {
            push_taken(L, f, have); /* a final line without a terminator */
            return 1;
        }
        if (have > max_line)
            return luaL_error(L, "fetch: a line longer than %d bytes", (int)max_line);
    }
    if (f->phase == P_DONE)
        return 0;
    if (f->phase == P_FAILED || f->phase == P_CLOSED)
        return raise_failure(L, f);
    return wait_on(L, f, lines_k, "up:lines()");
}

/* Sets ev.id when this block changed the last event id (stack: ..., uv, queue, event). */
static void set_changed_id(lua_State *L, const struct rill_sse_event *ev)
{
    lua_pushlstring(L, ev->id, ev->id_len);
    lua_getfield(L, -4, "sse_last_id");
    int same = lua_rawequal(L, -1, -2) || (ev->id_len == 0 && lua_isnil(L, -1));
    lua_pop(L, 1);
    if (same) {
        lua_pop(L, 1);
        return;
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -5, "sse_last_id");
    lua_setfield(L, -2, "id");
}

/*
 * Queues one parsed event as a table: {data=, event=, id=, retry=}. data is
 * nil for a block that fires no event; id is there when the block changed
 * the last event id, so a relay re-sends exactly what moves the client.
 */
static int on_sse_event(const struct rill_sse_event *ev, void *arg)
{
    lua_State *L = arg; /* stack: ..., uv, queue */
    struct fetch *f = check_fetch(L, lua_upvalueindex(1));
    lua_createtable(L, 0, 4);
    if (ev->fires) {
        lua_pushlstring(L, ev->data, ev->data_len);
        lua_setfield(L, -2, "data");
    }
    if (!(ev->type_len == 7 && memcmp(ev->type, "message", 7) == 0)) {
        lua_pushlstring(L, ev->type, ev->type_len);
        lua_setfield(L, -2, "event");
    }
    set_changed_id(L, ev);
    if (ev->retry >= 0) {
        lua_pushinteger(L, ev->retry);
        lua_setfield(L, -2, "retry");
    }
    lua_rawseti(L, -2, ++f->sse_tail);
    return 0;
}

/* Feeds buffered body bytes to the SSE parser until an event is queued. */
static void parse_events(lua_State *L, struct fetch *f)
{
    while (f->sse_head == f->sse_tail && evbuffer_get_length(f->body) > 0) {
        struct evbuffer_iovec v;
        evbuffer_peek(f->body, -1, NULL, &v, 1);
        int rc = rill_sse_feed(f->sse, v.iov_base, v.iov_len, on_sse_event, L);
        evbuffer_drain(f->body, v.iov_len);
        consumed(f);
        if (rc == RILL_SSE_TOO_BIG)
            luaL_error(L, "fetch: an event stream event larger than %d bytes",
                       (int)lua_tointeger(L, lua_upvalueindex(2)));
        if (rc != 0)
            luaL_error(L, "fetch: out of memory parsing events");
    }
}

static int events_k(lua_State *L, int status, lua_KContext ctx)
{
    struct fetch *f = check_fetch(L, lua_upvalueindex(1));
    (void)status, (void)ctx;
    lua_getiuservalue(L, lua_upvalueindex(1), 1);
    lua_getfield(L, -1, "sse_queue");
    if (f->body)
        parse_events(L, f);
    if (f->sse_head < f->sse_tail) {
        lua_rawgeti(L, -1, ++f->sse_head);
        lua_pushnil(L);
        lua_rawseti(L, -3, f->sse_head);
        return 1;
    }
    lua_pop(L, 2);
    if (f->phase == P_DONE)
        return 0; /* an event without its blank line is dropped, as browsers do */
    if (f->phase == P_FAILED || f->phase == P_CLOSED)
        return raise_failure(L, f);
    return wait_on(L, f, events_k, "up:events()");
}

static int iter_events(lua_State *L)
{
    return events_k(L, LUA_OK, 0);
}

/*
 * up:events([max_event_bytes]) → iterator of parsed server-sent events, as
 * browsers parse them (WHATWG; src/sse_parse.c). Blocks that only move the
 * id or retry come through too, with data nil, so a relay passes them on.
 */
static int fetch_events(lua_State *L)
{
    struct fetch *f = check_fetch(L, 1);
    lua_Integer max = lua_isnoneornil(L, 2) ? RILL_SSE_DEFAULT_MAX
                                            : rill_check_int_range(L, 2, 1, RILL_SSE_MAX_CAP);
    if (f->sse)
        return luaL_error(L, "events() was already called on this fetch");
    f->sse = rill_sse_new((size_t)max);
    if (!f->sse)
        return luaL_error(L, "out of memory");
    lua_getiuservalue(L, 1, 1);
    lua_newtable(L);
    lua_setfield(L, -2, "sse_queue");
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, max);
    return rill_push_iterator(L, iter_events, 2, 1);
}

static int iter_chunks(lua_State *L)
{
    return chunks_k(L, LUA_OK, 0);
}

static int iter_lines(lua_State *L)
{
    return lines_k(L, LUA_OK, 0);
}

/* up:chunks() → iterator of body pieces as they arrive. */
static int fetch_chunks(lua_State *L)
{
    check_fetch(L, 1);
    lua_pushvalue(L, 1);
    return rill_push_iterator(L, iter_chunks, 1, 1);
}

/* up:lines([max_line]) → iterator of lines, each with its terminator. */
static int fetch_lines(lua_State *L)
{
    check_fetch(L, 1);
    lua_Integer max_line =
        lua_isnoneornil(L, 2) ? 1024 * 1024 : rill_check_int_range(L, 2, 1, FETCH_MAX_LIMIT);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, max_line);
    return rill_push_iterator(L, iter_lines, 2, 1);
}

/* Fields (status, headers, url, error, code) and methods. */
static int fetch_index(lua_State *L)
{
    struct fetch *f = check_fetch(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), luaL_checkstring(L, 2)) != LUA_TNIL)
        return 1;
    const char *key = lua_tostring(L, 2);
    if (strcmp(key, "error") == 0) {
        lua_pushstring(L, f->phase == P_FAILED ? f->error : NULL);
        return 1;
    }
    if (strcmp(key, "code") == 0) {
        lua_pushstring(L, f->phase == P_FAILED ? f->code : NULL);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, key);
    return 1;
}

static int fetch_tostring(lua_State *L)
{
    struct fetch *f = check_fetch(L, 1);
    lua_pushfstring(L, "rill.fetch (%s:%d, %s)", f->host, f->port,
                    f->phase == P_DONE     ? "done"
                    : f->phase == P_FAILED ? "failed"
                    : f->phase == P_CLOSED ? "closed"
                                           : "open");
    return 1;
}

static const luaL_Reg fetch_methods[] = {
    {"read", fetch_read},     {"chunks", fetch_chunks}, {"lines", fetch_lines},
    {"events", fetch_events}, {"close", fetch_close},   {NULL, NULL},
};

static const luaL_Reg fetch_meta[] = {
    {"__gc", fetch_close},
    {"__close", fetch_close},
    {"__tostring", fetch_tostring},
    {NULL, NULL},
};

void rill_open_fetch(lua_State *L)
{
    luaL_newmetatable(L, FETCH_MT);
    luaL_setfuncs(L, fetch_meta, 0);
    luaL_newlib(L, fetch_methods);
    lua_pushcclosure(L, fetch_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, fetch_call);
    lua_setfield(L, -2, "fetch");
}
