/* SPDX-License-Identifier: MIT */
/*
 * From what a handler returns to bytes on the wire. lua/rill/respond.lua
 * decides the shape; these functions (rill.core.out) talk to evhttp:
 * reply(status, headers, body) for a whole body, start/write/finish for a
 * chunked one. write() parks the body when the client is slow: above
 * RILL_OUT_HIGH queued bytes the coroutine waits until evhttp's write
 * callback reports the buffer drained to RILL_OUT_LOW.
 */
#include "response.h"

#include "accesslog.h"
#include "compress.h"
#include "conn.h"
#include "lean.h"
#include "effects.h"
#include "headscan.h"
#include "hub.h"
#include "luanum.h"
#include "replyhead.h"
#include "static.h"
#include "tls.h"
#include "server.h"
#include "worker.h"

#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static struct bufferevent *request_bev(struct rill_request *r)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
    return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

/*
 * evhttp stops reading while the handler runs, so a client that leaves is not
 * seen. We re-enable reading with no read callback, as evhttp itself does
 * while it writes a reply: EOF then reaches evhttp's error callback, which
 * detaches the request and calls the close callback server.c armed. The input
 * mark bounds what a client can pile up meanwhile.
 */
void rill_response_watch_close(struct rill_request *r)
{
    struct bufferevent *bev = request_bev(r);
    bufferevent_data_cb writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    if (!bev)
        return;
    r->watching = 1;
    bufferevent_getcb(bev, NULL, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, NULL, writecb, eventcb, cbarg);
    bufferevent_setwatermark(bev, EV_READ, 0, RILL_IN_HIGH);
    bufferevent_enable(bev, EV_READ);
}

/*
 * Before the request goes back to evhttp (a whole reply, or a stream's end):
 * the connection may serve another one, and evhttp's own end-of-reply
 * callback must see the output empty.
 */
static void unwatch(struct rill_request *r)
{
    struct bufferevent *bev = request_bev(r);
    r->watching = 0;
    if (r->conn) /* answered: a streamed body not read by now never will be (conn.c drops it) */
        rill_conn_body_abandon(r->conn);
    if (bev) {
        bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
        if (r->tls)
            rill_tls_kick(bev); /* what the limit left inside OpenSSL */
    }
}

/* ---- a handler's status and headers -------------------------------------------------- */

/*
 * What a handler's headers said of the framing. Those fields are rill's to
 * write (replyhead.h): they are taken out of the headers, never copied, and
 * what they ask is checked against the reply.
 */
struct wishes {
    long long length; /* its Content-Length; -1: none */
    int close;        /* its Connection listed "close" */
};

/*
 * A value goes on the wire as given, so rill checks it itself rather than
 * trust a libevent build (upstream 2.1.12's evhttp_add_header lets CRLF+SP
 * through): CR, LF, NUL or any other control byte but HTAB is refused.
 */
static void check_value(lua_State *L, const char *name, const char *v, size_t len)
{
    long bad = rill_value_bad_byte(v, len);
    if (bad >= 0)
        luaL_error(L, "header '%s' has a control character (byte %d) in its value", name,
                   (int)(unsigned char)v[bad]);
}

static long long parse_length(const char *v)
{
    long long n = 0;
    if (!*v || strlen(v) > 18 || v[strspn(v, "0123456789")] != '\0')
        return -1;
    for (; *v; v++)
        n = n * 10 + (*v - '0');
    return n;
}

static void take_framing_field(lua_State *L, struct wishes *w, const char *name, const char *v)
{
    if (strcasecmp(name, "content-length") == 0) {
        long long n = parse_length(v);
        if (n < 0 || (w->length >= 0 && n != w->length))
            luaL_error(L, "header 'content-length' must be one length in digits (got '%s')", v);
        w->length = n;
    } else if (strcasecmp(name, "connection") == 0) {
        w->close |= rill_lists_token(v, "close"); /* the client gets a close, from rill */
    } /* Transfer-Encoding, TE, Trailer, Upgrade, Keep-Alive: rill frames the body itself */
}

/* Where checked headers go: a reply's evhttp list, or a Lua table (rill.test). */
struct sink {
    void (*put)(lua_State *L, struct sink *k, const char *name, const char *value);
    struct evkeyvalq *list;
    int table; /* stack index */
};

static void put_list(lua_State *L, struct sink *k, const char *name, const char *value)
{
    if (evhttp_add_header(k->list, name, value) != 0)
        luaL_error(L, "header '%s' could not be added", name);
}

static void put_table(lua_State *L, struct sink *k, const char *name, const char *value)
{
    lua_pushstring(L, name);
    lua_pushstring(L, value);
    rill_table_add_multi(L, k->table);
}

static void add_header(lua_State *L, struct sink *h, struct wishes *w, const char *name, int vidx)
{
    size_t len;
    int t = lua_type(L, vidx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "header '%s' has a %s value (string, number or list expected)", name,
                   lua_typename(L, t));
    const char *v = lua_tolstring(L, vidx, &len); /* a value, never the key next() needs */
    check_value(L, name, v, len);
    if (rill_is_framing_field(name))
        take_framing_field(L, w, name, v);
    else
        h->put(L, h, name, v);
}

/* A table value must be a list (a repeated header): anything else would be dropped unseen. */
static lua_Integer list_length(lua_State *L, int idx, const char *name)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        keys++;
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
            keys = -1;
        if (keys < 0) {
            lua_pop(L, 1);
            break;
        }
    }
    if (keys != n)
        luaL_error(L, "header '%s' has a table value that is not a list of values", name);
    return n;
}

/* Copies a Lua headers table (name → value or list of values) into h; framing fields to w. */
static void set_headers(lua_State *L, int idx, struct sink *h, struct wishes *w)
{
    w->length = -1;
    w->close = 0;
    if (lua_isnoneornil(L, idx))
        return;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "response headers must be a table (got a %s)", luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) /* never lua_tostring a key during next() */
            luaL_error(L, "header names must be strings (got a %s)", luaL_typename(L, -2));
        size_t nlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        if (!rill_is_token(name, nlen)) /* a NUL inside is no tchar either */
            luaL_error(L, "invalid header name '%s'", name);
        if (lua_type(L, -1) == LUA_TTABLE) {
            int list = lua_gettop(L);
            lua_Integer n = list_length(L, list, name);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, list, i);
                add_header(L, h, w, name, lua_gettop(L));
                lua_pop(L, 1);
            }
        } else {
            add_header(L, h, w, name, lua_gettop(L));
        }
        lua_pop(L, 1);
    }
}

/* A final status: 1xx are interim answers, which a handler cannot send as its reply. */
static int check_status(lua_State *L, int idx)
{
    int ok;
    lua_Integer s = lua_tointegerx(L, idx, &ok);
    if (!ok || s < 200 || s > 599)
        luaL_error(L, "response status must be an integer from 200 to 599 (got %s)",
                   luaL_tolstring(L, idx, NULL));
    return (int)s;
}

/* The status and headers of r from Lua arguments 1 and 2, checked before any byte goes out. */
static int prepare_head(lua_State *L, struct rill_request *r, struct wishes *w)
{
    int status = check_status(L, 1);
    struct sink to_reply = {put_list, evhttp_request_get_output_headers(r->req), 0};
    set_headers(L, 2, &to_reply, w);
    /* a streamed body not read to its end: the client must not send another request after it */
    w->close |= rill_conn_body_unfinished(r->conn);
    rill_conn_reply_begins(r->conn);
    return status;
}

/* rill.core.gz_accepts(accept_encoding) → whether it takes gzip, as the server reads it
 * (rill.static). */
static int core_gz_accepts(lua_State *L)
{
    lua_pushboolean(L, rill_gz_accepts(luaL_optstring(L, 1, NULL)));
    return 1;
}

/*
 * rill.core.check_response(status, headers) → the headers a handler's reply
 * goes out with (name → value or list): rill.test's in-process collector
 * checks a response exactly as the server does, and shows what it sends.
 */
static int core_check_response(lua_State *L)
{
    struct wishes w;
    check_status(L, 1);
    lua_settop(L, 2);
    lua_newtable(L);
    struct sink to_table = {put_table, NULL, 3};
    set_headers(L, 2, &to_table, &w);
    return 1;
}

/* ---- rill.core.out ----------------------------------------------------------- */

/*
 * The request the driver answers. out is the driver's alone (server.c takes
 * it out of rill.core), and each call checks where the reply stands, so no
 * call can write a second head or re-arm a pending timer.
 */
static struct rill_request *out_request(lua_State *L)
{
    struct rill_request *r = rill_request_current(L);
    if (!r->req)
        luaL_error(L, "the response was already sent");
    return r;
}

static struct rill_request *out_unsent(lua_State *L)
{
    struct rill_request *r = out_request(L);
    if (r->streaming)
        luaL_error(L, "the response already started");
    return r;
}

static struct rill_request *out_streaming(lua_State *L, const char *what)
{
    struct rill_request *r = out_request(L);
    if (!r->streaming)
        luaL_error(L, "%s before the response started", what);
    return r;
}

/* ---- gzip (compress.h) -------------------------------------------------------- */

static int compress_default; /* --compress */

void rill_response_compress_default(int on)
{
    compress_default = on != 0;
}

/*
 * Whether r's reply may be gzip'd: the app asked (the boolean at idx; nil:
 * --compress), there is a body (not HEAD, 204 or 304), its type is text of
 * some kind and it has no Content-Encoding of its own. Such a reply says
 * Vary: Accept-Encoding whether or not this client takes gzip, so a cache
 * keeps the two apart. Returns whether this client takes it.
 */
static int gz_eligible(lua_State *L, int idx, struct rill_request *r, int status)
{
    int want = lua_isnoneornil(L, idx) ? compress_default : lua_toboolean(L, idx);
    if (!want || status == 204 || status == 304 || status == 206)
        return 0;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    const char *type = evhttp_find_header(h, "Content-Type");
    const char *cc = evhttp_find_header(h, "Cache-Control");
    if (!rill_gz_compressible(type ? type : "text/plain") ||
        evhttp_find_header(h, "Content-Encoding") || evhttp_find_header(h, "Content-Range") ||
        (cc && strcasestr(cc, "no-transform")))
        return 0;
    evhttp_add_header(h, "Vary", "Accept-Encoding"); /* a HEAD's too: GET's header fields */
    if (evhttp_request_get_command(r->req) == EVHTTP_REQ_HEAD || !rill_gz_accepted(r->req))
        return 0;
    return 1;
}

/* A strong ETag names the identity body's bytes: the gzip'd one's is weak (as nginx makes it). */
static void weaken_etag(struct evkeyvalq *h)
{
    const char *etag = evhttp_find_header(h, "ETag");
    if (!etag || strncmp(etag, "W/", 2) == 0)
        return;
    char weak[512];
    int n = snprintf(weak, sizeof weak, "W/%s", etag);
    if (n < 0 || (size_t)n >= sizeof weak)
        return;
    evhttp_remove_header(h, "ETag");
    evhttp_add_header(h, "ETag", weak);
}

/*
 * out.reply(status, headers, body): the whole response at once. A handler's
 * Content-Length must be the body's; for HEAD with no body given it stands
 * for the length GET would have, as nothing follows the head anyway.
 */
static int out_reply(lua_State *L)
{
    struct rill_request *r = out_unsent(L);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 3, NULL, &len);
    struct wishes w;
    int status = prepare_head(L, r, &w);
    struct rill_framing f =
        rill_framing_decide(r->req, status, RILL_BODY_WHOLE, len, body != NULL, w.close);
    if (w.length >= 0 && f.length && (size_t)w.length != len) {
        if (f.body || len != 0)
            return luaL_error(L, "header 'content-length' says %I bytes, the body has %I",
                              (lua_Integer)w.length, (lua_Integer)len);
        f.len = (size_t)w.length; /* HEAD */
    }
    struct evbuffer *gz = NULL;
    if (body && w.length < 0 && gz_eligible(L, 4, r, status) && len >= RILL_GZ_MIN_LENGTH &&
        (gz = evbuffer_new()) != NULL && rill_gz_whole(body, len, gz) == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Encoding", "gzip");
        weaken_etag(evhttp_request_get_output_headers(r->req));
        len = evbuffer_get_length(gz);
        body = (const char *)evbuffer_pullup(gz, -1);
        f = rill_framing_decide(r->req, status, RILL_BODY_WHOLE, len, 1, w.close);
    }
    unwatch(r);
    r->responded = 1;
    r->out.status = (unsigned short)status;
    r->out.sent = f.body ? len : 0;
    rill_reply_whole(r->req, r->task.w->base, &f, body);
    r->req = NULL; /* evhttp frees it once written */
    if (gz)
        evbuffer_free(gz);
    return 0;
}

/*
 * out.file(status, headers, file, offset, length): a whole response whose
 * body is length bytes of a rill.file (static.c) from offset, sent by the
 * kernel (sendfile) or mapped for TLS; the Lua state never holds them. The
 * file object is closed: the reply owns its descriptor.
 */
static int out_file(lua_State *L)
{
    struct rill_request *r = out_unsent(L);
    off_t size;
    luaL_checkudata(L, 3, "rill.file");
    lua_Integer offset = luaL_optinteger(L, 4, 0), length = luaL_optinteger(L, 5, -1);
    struct wishes w;
    int status = prepare_head(L, r, &w);
    if (w.length >= 0)
        return luaL_error(L, "a file's response sets its own content-length");
    int fd = rill_file_take(L, 3, &size);
    if (length == -1 && offset >= 0 && offset <= (lua_Integer)size)
        length = (lua_Integer)size - offset; /* the rest of it */
    if (offset < 0 || length < 0 || offset > (lua_Integer)size ||
        length > (lua_Integer)size - offset) {
        close(fd);
        return luaL_error(L, "bytes %I+%I are not in a file of %I bytes", offset, length,
                          (lua_Integer)size);
    }
    struct rill_framing f =
        rill_framing_decide(r->req, status, RILL_BODY_WHOLE, (size_t)length, 1, w.close);
    if (rill_reply_file(r->req, r->task.w->base, &f, fd, (off_t)offset) != 0)
        return luaL_error(
            L, "cannot send the file (out of memory, or it was cut short since it was opened)");
    unwatch(r);
    r->responded = 1;
    r->out.status = (unsigned short)status;
    r->out.sent = f.body ? (size_t)length : 0;
    r->req = NULL; /* evhttp frees it once written */
    return 0;
}

/* Whether r's request has a body, whole or streamed: a generator stream keeps it, and evhttp. */
static int has_body(struct rill_request *r)
{
    long long declared;
    return (r->conn && rill_conn_body_streamed(r->conn, &declared)) ||
           evbuffer_get_length(evhttp_request_get_input_buffer(r->req)) > 0;
}

/*
 * out.start(status, headers, compress, source, generator) → whether a body
 * may follow (not for HEAD, 204, 304). A source that is a bare hub
 * subscription will be fed from C, and a generator (a coroutine out.drive
 * will take) resumed by C: on a plain HTTP/1.1 connection either is taken
 * off evhttp once the handler ends (lean.h), so its head says Connection:
 * close, as it will close when it ends.
 */
static int out_start(lua_State *L)
{
    struct rill_request *r = out_unsent(L);
    struct wishes w;
    int status = prepare_head(L, r, &w);
    struct rill_framing f = rill_framing_decide(r->req, status, RILL_BODY_STREAM, 0, 1, w.close);
    /* chunked: HTTP/1.1 and not 204 or 304; body: not HEAD either; keep is HTTP/1.0 alone */
    /* not when a pipelined request waits: it would be lost, and its client said keep-alive */
    r->lean_ok =
        !r->tls && f.chunked && f.body && r->conn && rill_conn_may_detach(r->conn) &&
        (rill_hub_subscription(L, 4) != NULL || (lua_type(L, 5) == LUA_TTHREAD && !has_body(r)));
    f.close |= r->lean_ok;
    if (w.length < 0 && gz_eligible(L, 3, r, status) && f.body) { /* a HEAD's Vary too */
        r->gz_on = 1; /* its compressor comes with its first chunk, or it shares its topic's */
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Encoding", "gzip");
        weaken_etag(evhttp_request_get_output_headers(r->req));
    }
    rill_reply_start_stream(r->req, r->task.w->base, r->task.w->scratch, &f);
    r->responded = r->streaming = 1;
    r->task.w->stats.streams++;
    r->out.status = (unsigned short)status;
    r->out.streamed = 1;
    if (!f.body)
        r->out.head = 1; /* a HEAD, 204 or 304: no body goes out */
    struct bufferevent *bev = request_bev(r);
    if (bev) {
        bufferevent_setwatermark(bev, EV_WRITE, RILL_OUT_LOW, 0);
        bufferevent_setwatermark(bev, EV_READ, 0, RILL_IN_HIGH); /* notes Q2: unread input */
        /* a stream may be idle for hours (notes Q3, landmine 3): conn.c's inactivity
           timer drops its client only when output waits unread */
    }
    lua_pushboolean(L, f.body);
    return 1;
}

static void pump(void *arg);

static void on_drain(struct evhttp_connection *evcon, void *arg)
{
    struct rill_request *r = arg;
    (void)evcon;
    if (!r->wait_drain)
        return; /* evhttp calls this on every drain, waited for or not */
    r->wait_drain = 0;
    r->task.w->stats.blocked--;
    if (r->pump)
        pump(r);
    else
        rill_task_resume(&r->task, 0);
}

static void drain_cancel(struct rill_task *t)
{
    ((struct rill_request *)t)->wait_drain = 0;
    t->w->stats.blocked--;
}

/* A heartbeat queue: the streams of one interval, the longest idle first (see on_beats). */
struct rill_beats {
    struct rill_tq q;
    double every;
    int streams;
    struct rill_beats *next;
};

static void rearm_heartbeat(struct rill_request *r)
{
    if (r->beats)
        rill_tq_append(&r->beats->q, r); /* idle from now */
}

/* "1a\r\n": a chunk's size line, in hex. */
static size_t chunk_size_line(char out[20], size_t len)
{
    char hex[16], *p = hex + sizeof hex;
    size_t n = 0;
    do
        *--p = "0123456789abcdef"[len & 15];
    while ((len >>= 4) > 0);
    while (p < hex + sizeof hex)
        out[n++] = *p++;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

/*
 * The first chunk a stream writes after it waited (an event, an upstream
 * line) goes to the socket at once when nothing is queued before it, as
 * nginx's flush does: through the bufferevent it would cost an epoll_ctl to
 * watch for writability, a loop turn, and another epoll_ctl. Later chunks of
 * the same resume are queued, so a burst still leaves in one writev. Returns
 * how much of line + buf + CRLF was sent; what was sent is gone from buf.
 */
static size_t write_now(struct rill_request *r, struct bufferevent *bev, const char *line, size_t n)
{
    struct evbuffer *buf = r->task.w->scratch;
    struct evbuffer_iovec v[8];
    struct iovec iov[10];
    if (r->tls || r->wrote_at == r->task.w->resumes ||
        evbuffer_get_length(bufferevent_get_output(bev)))
        return 0; /* a TLS stream's bytes go through the cipher, in the bufferevent */
    /*
     * All of buf or nothing: the size line announced all of it. (With len
     * -1, evbuffer_peek stops at the 8 vectors it was given and returns 8,
     * not the count all of buf needs: the lengths tell.)
     */
    int chains = evbuffer_peek(buf, -1, NULL, v, 8);
    size_t peeked = 0;
    for (int i = 0; i < chains && i < 8; i++)
        peeked += v[i].iov_len;
    if (chains < 0 || chains > 8 || peeked != evbuffer_get_length(buf))
        return 0;
    r->wrote_at = r->task.w->resumes;
    iov[0] = (struct iovec){(void *)line, n};
    for (int i = 0; i < chains; i++)
        iov[i + 1] = (struct iovec){v[i].iov_base, v[i].iov_len};
    iov[chains + 1] = (struct iovec){(void *)"\r\n", 2};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)chains + 2};
    ssize_t sent = sendmsg(bufferevent_getfd(bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent <= 0)
        return 0; /* EAGAIN, or an error the bufferevent will meet and report */
    size_t in_buf = (size_t)sent > n ? (size_t)sent - n : 0;
    evbuffer_drain(buf, in_buf);
    return (size_t)sent;
}

/*
 * Sends buf as one chunk. The framing is ours, straight into the output (the
 * size line) and after the data (its CRLF): evhttp would printf the size for
 * every chunk, which is most of what an event costs on its way out.
 */
static void frame_chunk(struct rill_request *r, struct evbuffer *buf)
{
    struct evhttp_request *req = r->req;
    struct bufferevent *bev = r->lean ? NULL : request_bev(r);
    size_t len = evbuffer_get_length(buf);
    if (!r->out.head)
        r->out.sent += len;
    if (r->lean) { /* its own socket: the framing is ours already */
        char line[20];
        if (len)
            rill_lean_send(r->lean, line, chunk_size_line(line, len), buf, "\r\n", 2);
        rearm_heartbeat(r);
        return;
    }
    if (len && bev && req->chunked) {
        char line[20];
        size_t n = chunk_size_line(line, len), sent = write_now(r, bev, line, n);
        if (sent == n + len + 2)
            goto sent;
        if (sent < n)
            evbuffer_add(bufferevent_get_output(bev), line + sent, n - sent);
        sent = sent > n + len ? sent - n - len : 0; /* of the CRLF */
        evbuffer_add(buf, "\r\n" + sent, 2 - sent);
        req->chunked = 0; /* evhttp adds the data as is */
        evhttp_send_reply_chunk_with_cb(req, buf, on_drain, r);
        req->chunked = 1;
    } else {
        /* always the _with_cb variant: a plain call would reset the callback (notes Q1) */
        evhttp_send_reply_chunk_with_cb(req, buf, on_drain, r);
    }
sent:
    evbuffer_drain(buf, evbuffer_get_length(buf)); /* left over when the client is gone */
    rearm_heartbeat(r);
}

/* A compressed stream's bytes, between its compressor and its framing (one worker per process). */
static struct evbuffer *gz_out;

/*
 * Sends buf (drained) as one chunk: through r's compressor first when its
 * body is gzip'd, flushed, so what the client gets decompresses to every
 * byte given so far. A compressor that fails (out of memory) takes the rest
 * of the stream with it: nothing more is sent, and the stream ends cut off.
 */
/* buf's bytes as a segment compressed alone, for a stream sharing its topic's compression. */
static int gz_alone(struct rill_request *r, struct evbuffer *buf)
{
    size_t n = evbuffer_get_length(buf);
    const unsigned char *plain = evbuffer_pullup(buf, -1);
    if (!plain || rill_gzs_alone(r->gzs, plain, n, buf) != 0)
        return -1;
    evbuffer_drain(buf, n); /* the plain bytes, before the compressed ones */
    return 0;
}

static void send_chunk(struct rill_request *r, struct evbuffer *buf)
{
    if (r->gzs && evbuffer_get_length(buf)) {
        if (r->gz_broken || gz_alone(r, buf) != 0) {
            r->gz_broken = 1;
            evbuffer_drain(buf, evbuffer_get_length(buf));
            return;
        }
    } else if (r->gz_on && evbuffer_get_length(buf)) {
        if (r->gz_broken || (!r->gz && !(r->gz = rill_gz_stream_new())) ||
            (!gz_out && !(gz_out = evbuffer_new())) || rill_gz_stream(r->gz, buf, gz_out, 0) != 0) {
            r->gz_broken = 1;
            evbuffer_drain(buf, evbuffer_get_length(buf));
            if (gz_out)
                evbuffer_drain(gz_out, evbuffer_get_length(gz_out));
            return;
        }
        evbuffer_add_buffer(buf, gz_out);
    }
    frame_chunk(r, buf);
}

void rill_response_send(struct rill_request *r, struct evbuffer *buf)
{
    send_chunk(r, buf);
}

/* The gzip trailer of a stream ending cleanly; its compressor goes. 0: the end may be clean. */
static int gz_finish(struct rill_request *r)
{
    struct evbuffer *buf = r->task.w->scratch;
    if (r->gzs) {
        if (r->gz_broken)
            return -1;
        rill_gzs_end(r->gzs, buf);
        frame_chunk(r, buf);
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return 0;
    }
    if (!r->gz && !r->gz_broken && !(r->gz = rill_gz_stream_new()))
        r->gz_broken = 1; /* nothing was sent yet: its header and trailer still are */
    int ok = !r->gz_broken && (gz_out || (gz_out = evbuffer_new()) != NULL) &&
             rill_gz_stream(r->gz, buf, gz_out, 1) == 0;
    if (ok) {
        evbuffer_add_buffer(buf, gz_out);
        frame_chunk(r, buf);
    }
    evbuffer_drain(buf, evbuffer_get_length(buf));
    if (gz_out)
        evbuffer_drain(gz_out, evbuffer_get_length(gz_out));
    rill_gz_stream_free(r->gz);
    r->gz = NULL;
    return ok ? 0 : -1;
}

/*
 * Heartbeats. A stream idle for its interval gets a comment: one ":" line,
 * with no blank line after it. A comment followed by a blank line is an
 * empty event block to some clients (@microsoft/fetch-event-source's bug #15
 * dispatches an empty message for it). rill.sse writes whole events only, so
 * this always falls between two events.
 *
 * The streams of one interval are one timed queue (timedq.h), stamped on
 * every chunk: a link per stream, not a struct event, and no timer-heap work
 * per chunk. An interval is rounded down to eighths of an octave (15, 10,
 * 30, 60 s stay exact; none is more than 12% early), so however many
 * intervals requests ask for there are at most 8 queues an octave, about 320
 * between 0.001 s and 1e9 s, and no stream beats later than it asked.
 */
static struct rill_beats *beat_queues; /* one worker per process */

static void on_beats(evutil_socket_t fd, short what, void *arg)
{
    struct rill_beats *b = arg;
    struct rill_request *r;
    struct timeval now;
    (void)fd, (void)what;
    rill_tq_now(&now);
    while ((r = rill_tq_due(&b->q, &now)) != NULL) {
        rill_tq_remove(&b->q, r); /* sending stamps it again, at the back */
        if (!r->streaming || (!r->req && !r->lean))
            continue;
        if (r->gzs) { /* bytes that decompress to nothing: its topic's window goes on */
            rill_gz_nothing(r->task.w->scratch);
            frame_chunk(r, r->task.w->scratch); /* stamps it again */
            continue;
        }
        evbuffer_add(r->task.w->scratch, ":\n", 2);
        send_chunk(r, r->task.w->scratch);
    }
    rill_tq_arm(&b->q);
}

/* every rounded down to m x 2^k, m a sixteenth from 8/16 to 15/16 (frexp's range). */
static double beat_interval(double every)
{
    int k;
    double m = frexp(every, &k);
    return ldexp(floor(m * 16) / 16, k);
}

/* The queue for every seconds, rounded (beat_interval); NULL: out of memory. */
static struct rill_beats *beats_for(struct event_base *base, double every)
{
    struct rill_beats *b;
    every = beat_interval(every);
    for (b = beat_queues; b; b = b->next)
        if (b->every == every)
            return b;
    if (!(b = calloc(1, sizeof *b)))
        return NULL;
    rill_tq_init(&b->q, base, on_beats, b, every, offsetof(struct rill_request, beat));
    if (!b->q.ev) {
        free(b);
        return NULL;
    }
    b->every = every;
    b->next = beat_queues;
    beat_queues = b;
    return b;
}

int rill_response_beat_queues(void)
{
    int n = 0;
    for (struct rill_beats *b = beat_queues; b; b = b->next)
        n++;
    return n;
}

static void beats_leave(struct rill_beats *b)
{
    if (--b->streams > 0)
        return;
    struct rill_beats **p = &beat_queues;
    while (*p != b)
        p = &(*p)->next;
    *p = b->next;
    rill_tq_free(&b->q);
    free(b);
}

/* out.sse(heartbeat_seconds): this response is an event stream (rill.sse), once. */
static int out_sse(lua_State *L)
{
    struct rill_request *r = out_streaming(L, "sse");
    double every = rill_check_range(L, 1, 0, RILL_MAX_SECONDS);
    luaL_argcheck(L, every == 0 || every >= RILL_MIN_HEARTBEAT, 1,
                  "heartbeat must be 0 (none) or at least 0.001 seconds");
    if (r->sse)
        return luaL_error(L, "the response is already an event stream");
    if (every > 0 && !(r->beats = beats_for(r->task.w->base, every)))
        return luaL_error(L, "out of memory");
    r->sse = 1;
    if (r->beats) {
        r->beats->streams++;
        rearm_heartbeat(r);
    }
    return 0;
}

void rill_response_stop_heartbeat(struct rill_request *r)
{
    if (!r->beats)
        return;
    rill_tq_remove(&r->beats->q, r);
    beats_leave(r->beats);
    r->beats = NULL;
}

/*
 * out.write(chunk): one chunk of the chunked encoding; waits while the client
 * is behind. A published hub event goes out by reference to its shared bytes.
 */
static int out_write(lua_State *L)
{
    struct rill_request *r = out_streaming(L, "write");
    struct evbuffer *buf = r->task.w->scratch;
    rill_task_check_wait(L, "a body write"); /* it may wait: nothing is written unless it can */
    if (!rill_hub_write(buf, L, 1)) {
        size_t len;
        const char *chunk = luaL_checklstring(L, 1, &len);
        if (len == 0)
            return 0; /* an empty chunk would end the body */
        evbuffer_add(buf, chunk, len);
    }
    send_chunk(r, buf);
    struct bufferevent *bev = request_bev(r);
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > RILL_OUT_HIGH) {
        r->wait_drain = 1;
        r->task.w->stats.blocked++;
        return rill_task_wait(L, &r->task, drain_cancel);
    }
    return 0;
}

/* out.finish(): the terminating chunk. */
static int out_finish(lua_State *L)
{
    struct rill_request *r = out_streaming(L, "finish");
    rill_response_end(r, 1);
    return 0;
}

/*
 * A stream fed from C has no Lua left that could read its request (the
 * handler ended, its req view is cut off), and its framing was decided with
 * its head (a close is in the output headers, which evhttp_send_done reads
 * with the input ones). What an idle stream would keep for hours of the
 * request goes: its headers, its URI and their parse (evhttp frees these
 * itself on its error path, so they may be NULL). The id is fixed first.
 */
void rill_response_travel_light(struct rill_request *r)
{
    struct evhttp_request *req = r->req;
    if (!req || !r->pump)
        return;
    (void)rill_request_id(r);
    evhttp_clear_headers(evhttp_request_get_input_headers(req));
    if (req->uri_elems)
        evhttp_uri_free(req->uri_elems);
    req->uri_elems = NULL;
    free(req->uri); /* mm_strdup'd: rill sets no allocator of libevent's own */
    req->uri = NULL;
    /* its head said close (out_start): the first pump turn takes it off evhttp (lean.h) */
    r->lean_wanted = r->lean_ok && req->chunked && r->conn != NULL;
}

static void lean_drained(void *arg)
{
    struct rill_request *r = arg;
    if (!r->wait_drain)
        return;
    r->wait_drain = 0;
    r->task.w->stats.blocked--;
    if (r->pump)
        pump(r);
    else
        rill_task_resume(&r->task, 0); /* a driven generator's (drive_yielded) */
}

static void lean_gone(void *arg, int timed_out)
{
    struct rill_request *r = arg;
    r->lean = NULL;
    if (timed_out)
        rill_server_timed_out(r);
    rill_server_client_gone(r);
}

static void lean_closed(void *arg)
{
    struct rill_request *r = arg;
    r->lean = NULL;
    rill_server_stream_done(r);
}

static const struct rill_lean_ops lean_ops = {lean_drained, lean_gone, lean_closed};

/*
 * A C-fed stream's first pump turn, outside any evhttp call: its socket is
 * the stream's from now on (lean.h), unless the connection cannot be
 * detached (a pipelined request waits, out of memory): it then stays.
 */
static void go_lean(struct rill_request *r)
{
    int fd;
    r->lean_wanted = 0;
    if (!r->req || !r->conn || !r->streaming || r->gone || r->wait_drain)
        return;
    /* a driven generator may still read its req: what the view reads is copied first */
    int stashed = r->task.ref != LUA_NOREF && !r->stash;
    if (stashed && rill_request_stash(r) != 0)
        return;
    struct rill_lean *l = rill_lean_alloc();
    struct evbuffer *pending = l ? evbuffer_new() : NULL;
    if (!pending || rill_conn_detach(r->conn, &fd, pending) != 0) {
        if (pending)
            evbuffer_free(pending);
        rill_lean_discard(l);
        if (stashed) { /* it stays on evhttp: the view reads the request itself */
            free(r->stash);
            r->stash = NULL;
        }
        return;
    }
    r->req = NULL; /* freed with evhttp's connection */
    r->conn = NULL;
    r->watching = 0;
    rill_lean_start(l, r->task.w->base, fd, pending, rill_server_conns(r), &lean_ops, r);
    r->lean = l;
}

/* A lean stream's end: as rill_response_end's, the socket closing after it (lean.h). */
static void lean_end(struct rill_request *r, int clean)
{
    rill_response_unpump(r);
    rill_response_stop_heartbeat(r);
    if (r->gz_on && clean && gz_finish(r) != 0)
        clean = 0; /* no trailer: the client must not take the body as whole */
    rill_outcome_ends(&r->out, clean ? RILL_END_HANDLER_END : RILL_END_ERROR);
    r->streaming = 0;
    r->task.w->stats.streams--;
    rill_lean_end(r->lean, clean);
}

void rill_response_unpump(struct rill_request *r)
{
    if (!r->pump)
        return;
    if (r->wait_drain) {
        r->wait_drain = 0;
        r->task.w->stats.blocked--;
    }
    rill_hub_unpump(r->pump);
    luaL_unref(r->task.w->L, LUA_REGISTRYINDEX, r->pump_ref);
    r->pump = NULL;
}

void rill_response_end(struct rill_request *r, int clean)
{
    struct evhttp_request *req = r->req;
    if (r->lean) {
        lean_end(r, clean);
        return;
    }
    rill_response_unpump(r);
    rill_response_stop_heartbeat(r);
    unwatch(r);
    if (r->gz_on && clean && gz_finish(r) != 0)
        clean = 0; /* no trailer: the client must not take the body as whole */
    rill_outcome_ends(&r->out, clean ? RILL_END_HANDLER_END : RILL_END_ERROR);
    if (!clean) {
        if (r->conn)
            rill_conn_cut(r->conn);
        /*
         * evhttp has no call to drop a stream. Clearing `chunked` makes
         * reply_end add no terminating chunk, and "Connection: close" makes it
         * close the connection once the queued chunks are flushed.
         */
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        req->chunked = 0;
        evhttp_remove_header(h, "Connection");
        evhttp_add_header(h, "Connection", "close");
    }
    r->streaming = 0;
    r->req = NULL;
    r->task.w->stats.streams--;
    evhttp_send_reply_end(req);
}

void rill_response_error(struct rill_request *r, int status, const char *what)
{
    char body[160];
    snprintf(body, sizeof body, "%s (request %s)\n", what, rill_request_id(r));
    rill_conn_reply_begins(r->conn);
    unwatch(r);
    r->responded = 1;
    r->out.status = (unsigned short)status;
    r->out.sent = r->out.head ? 0 : strlen(body);
    rill_reply_plain(r->req, r->task.w->base, status, body,
                     status == 503 || rill_conn_body_unfinished(r->conn));
    r->req = NULL;
}

/*
 * Feeds a pumped stream: whatever its subscription has, as one chunk per
 * turn, until it waits (the hub calls again), the client is slow (on_drain
 * calls again), the topic closes (the stream ends) or the hub drops it.
 */
static void pump(void *arg)
{
    struct rill_request *r = arg;
    struct evbuffer *buf = r->task.w->scratch;
    if (r->lean_wanted)
        go_lean(r);
    r->task.w->resumes++; /* a turn of the stream, as a resume is (write_now) */
    for (;;) {
        enum rill_pump_result res = r->wait_drain ? rill_hub_pump_check(r->pump)
                                                  : rill_hub_pump_into(r->pump, buf, RILL_OUT_HIGH);
        if (evbuffer_get_length(buf) && r->gzs)
            frame_chunk(r, buf); /* compressed by the hub, shared */
        else if (evbuffer_get_length(buf))
            send_chunk(r, buf);
        if (res == RILL_PUMP_END) {
            rill_response_end(r, 1);
            return;
        }
        if (res == RILL_PUMP_CUT) {
            /* cut off: the client resumes with its last id */
            r->task.abort(&r->task, rill_hub_sub_slow(r->pump));
            return;
        }
        if (r->wait_drain)
            return; /* on_drain calls again */
        struct bufferevent *bev = r->lean ? NULL : request_bev(r);
        size_t queued = r->lean ? rill_lean_pending(r->lean)
                        : bev   ? evbuffer_get_length(bufferevent_get_output(bev))
                                : 0;
        if (queued > RILL_OUT_HIGH) {
            r->wait_drain = 1;
            r->task.w->stats.blocked++;
            return;
        }
        if (res == RILL_PUMP_WAIT)
            return;
    }
}

/*
 * out.pump(iterator, first) → true when iterator is a bare hub subscription:
 * the stream is then fed from C (after first, a retry: line, if given) and
 * its handler may end, leaving no coroutine behind for an idle stream.
 */
static int out_pump(lua_State *L)
{
    struct rill_request *r = out_request(L);
    struct subscription *s = rill_hub_subscription(L, 1);
    if (!s || !r->streaming || r->pump) {
        lua_pushboolean(L, 0);
        return 1;
    }
    size_t len;
    const char *first = luaL_optlstring(L, 2, NULL, &len);
    /* the ref first: it may raise (the memory cap), and nothing is handed over yet */
    lua_getupvalue(L, 1, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the subscription stays alive */
    if (rill_hub_pump(s, &r->task, pump, r) != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        lua_pushboolean(L, 0);
        return 1;
    }
    r->pump_ref = ref;
    r->pump = s;
    struct evbuffer *buf = r->task.w->scratch;
    if (r->gz_on && !r->gz && (r->gzs = malloc(sizeof *r->gzs)) != NULL) {
        if (rill_hub_pump_gzip(s, r->gzs) == 0) {
            rill_gzs_start(r->gzs, buf); /* the header goes with the first chunk */
        } else {
            free(r->gzs); /* out of memory: it compresses on its own */
            r->gzs = NULL;
        }
    }
    if (first && len) {
        if (r->gzs) { /* after the header, first compressed alone */
            if (rill_gzs_alone(r->gzs, first, len, buf) != 0)
                r->gz_broken = 1;
        } else {
            evbuffer_add(buf, first, len);
        }
    }
    if (r->gzs)
        frame_chunk(r, buf);
    else if (evbuffer_get_length(buf))
        send_chunk(r, buf);
    lua_pushboolean(L, 1); /* the first pump turn comes once this handler has ended */
    return 1;
}

/* ---- a generator resumed by C (out.drive) ------------------------------------ */

/* Whether co can be resumed where its wrap() would: Lua's "suspended" (not started, or yielded). */
static int resumable(lua_State *co)
{
    lua_Debug ar;
    if (lua_status(co) == LUA_YIELD)
        return 1;
    return lua_status(co) == LUA_OK && !lua_getstack(co, 0, &ar) && lua_gettop(co) > 0;
}

/*
 * The value the generator yielded, at the top of L, as the bytes of an event
 * into buf: a published hub event by reference, an event table or a string
 * encoded as rill.sse.encode would. 0, or -1 with the error message on top.
 */
static int event_bytes(lua_State *L, struct evbuffer *buf)
{
    int t = lua_type(L, -1);
    if (rill_hub_write(buf, L, -1))
        return 0;
    if (t != LUA_TTABLE && t != LUA_TSTRING) {
        lua_pushfstring(
            L,
            "an event stream's generator yielded a %s (an event table, a string or nil expected)",
            luaL_typename(L, -1));
        return -1;
    }
    lua_pushcfunction(L, rill_sse_encode);
    lua_insert(L, -2);
    /* an event's __index is the app's Lua: inside the budget and the memory cap, as in the task */
    lua_Hook hook = lua_gethook(L); /* the app's own (debug.sethook, a coverage tool) stays */
    int mask = lua_gethookmask(L), count = lua_gethookcount(L);
    int capped = rill_worker_enforce_memory_cap(1);
    lua_State *outer = rill_worker_enter(L);
    int status = lua_pcall(L, 1, 1, 0);
    rill_worker_leave(L, outer);
    rill_worker_enforce_memory_cap(capped);
    if (hook)
        lua_sethook(L, hook, mask, count);
    if (status != LUA_OK)
        return -1;
    size_t len;
    const char *bytes = lua_tolstring(L, -1, &len);
    evbuffer_add(buf, bytes, len);
    return 0;
}

static void drive_start_cancel(struct rill_task *t)
{
    evtimer_del(t->timer);
}

/*
 * The bytes a driven generator sent in the resume going on: a lean socket
 * takes every chunk at once while the client keeps up, so past RILL_OUT_HIGH
 * in one resume the generator waits for the next loop turn instead. Other
 * connections get their turn, and the budget counts per resume, as when
 * evhttp's output filled. One resume runs at a time.
 */
static unsigned long burst_resume;
static size_t burst_bytes;

static enum rill_step next_turn(struct rill_task *t)
{
    rill_timer_add(t->timer, 0); /* on_drive_timer resumes it */
    t->cancel = drive_start_cancel;
    return RILL_STEP_WAIT;
}

/*
 * What a driven generator yielded (nres values on its coroutine): the first
 * is its next event, and nil (or none) its end, as a for loop reads an
 * iterator. Sent as one chunk; past the output's high mark the generator
 * waits for the client to read (on_drain, lean_drained).
 */
static enum rill_step drive_yielded(struct rill_task *t, int nres)
{
    struct rill_request *r = (struct rill_request *)t;
    lua_State *L = t->w->L, *co = t->co;
    struct evbuffer *buf = t->w->scratch;
    int top = lua_gettop(L);
    if (nres > 1)
        lua_pop(co, nres - 1); /* only the first is read */
    nres = nres > 0;
    if (!lua_checkstack(L, 5)) {
        lua_pop(co, nres);
        lua_pushliteral(co, "out of memory");
        return RILL_STEP_FAIL;
    }
    lua_xmove(co, L, nres);
    lua_settop(L, top + 1); /* the first value, or nil */
    if (lua_isnil(L, -1) || !r->streaming) {
        lua_settop(L, top);
        return RILL_STEP_END;
    }
    if (event_bytes(L, buf) != 0) {
        lua_xmove(L, co, 1); /* the message, where the task's error is collected */
        lua_settop(L, top);
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return RILL_STEP_FAIL;
    }
    lua_settop(L, top);
    if (burst_resume != t->w->resumes) {
        burst_resume = t->w->resumes;
        burst_bytes = 0;
    }
    burst_bytes += evbuffer_get_length(buf);
    send_chunk(r, buf);
    struct bufferevent *bev = r->lean || !r->req ? NULL : request_bev(r);
    size_t queued = r->lean ? rill_lean_pending(r->lean)
                    : bev   ? evbuffer_get_length(bufferevent_get_output(bev))
                            : 0;
    if (queued <= RILL_OUT_HIGH && r->lean &&
        (burst_bytes > RILL_OUT_HIGH || rill_lean_stopped(r->lean)))
        return next_turn(t); /* a stopped one: its event reports the client gone meanwhile */
    if (queued <= RILL_OUT_HIGH)
        return RILL_STEP_NEXT;
    r->wait_drain = 1;
    t->w->stats.blocked++;
    t->cancel = drain_cancel;
    return RILL_STEP_WAIT;
}

/*
 * The timer of a driven generator: its first resume, a loop turn after its
 * handler ended and outside any evhttp call (where it may leave evhttp), and
 * after that its rill.sleep's, which resumes it as sleep.c's own would.
 */
static void on_drive_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rill_request *r = arg;
    (void)fd, (void)what;
    if (r->lean_wanted)
        go_lean(r);
    rill_task_resume(&r->task, 0);
}

int rill_response_drive(struct rill_request *r)
{
    struct rill_task *t = &r->task;
    if (!t->timer && !(t->timer = evtimer_new(t->w->base, on_drive_timer, r)))
        return -1;
    event_assign(t->timer, t->w->base, -1, 0, on_drive_timer, r); /* not pending: it ran */
    r->drive = 0;
    rill_task_adopt(t, r->pump_ref);
    r->pump_ref = LUA_NOREF; /* t's now */
    t->yielded = drive_yielded;
    /* lean: its head said close; a request with a body keeps it where its view reads it */
    r->lean_wanted = r->lean_ok && r->req->chunked && r->conn != NULL && !has_body(r);
    rill_timer_add(t->timer, 0);
    t->cancel = drive_start_cancel;
    t->effect = "rill.sse";
    return 0;
}

/*
 * out.drive(co, first) → true when co, a stream's coroutine.wrap generator
 * (rill.coroutine.thread_of), will be resumed by C as the request's task once
 * the handler ends (after first, a retry: line, if given): no coroutine of the
 * driver's stays parked under it, nor its frames' tables.
 */
static int out_drive(lua_State *L)
{
    struct rill_request *r = out_request(L);
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_State *co = lua_tothread(L, 1);
    size_t len;
    const char *first = luaL_optlstring(L, 2, NULL, &len);
    if (!r->streaming || !r->sse || r->pump || r->drive || co == L || !resumable(co)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushvalue(L, 1);
    r->pump_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* it may raise: nothing is handed over yet */
    r->drive = 1;
    if (first && len) {
        evbuffer_add(r->task.w->scratch, first, len);
        send_chunk(r, r->task.w->scratch);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg out_funcs[] = {
    {"reply", out_reply}, {"file", out_file},     {"start", out_start},
    {"write", out_write}, {"finish", out_finish}, {"sse", out_sse},
    {"pump", out_pump},   {"drive", out_drive},   {NULL, NULL},
};

void rill_open_response(lua_State *L)
{
    luaL_newlib(L, out_funcs);
    lua_setfield(L, -2, "out");
    lua_pushcfunction(L, core_check_response);
    lua_setfield(L, -2, "check_response");
    lua_pushcfunction(L, core_gz_accepts);
    lua_setfield(L, -2, "gz_accepts");
}
