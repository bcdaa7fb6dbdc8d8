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

#include "headscan.h"
#include "hub.h"
#include "server.h"

#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

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
    bufferevent_set_timeouts(bev, NULL, NULL); /* a slow handler is not an idle client */
    r->timeouts_lifted = 1;
    bufferevent_getcb(bev, NULL, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, NULL, writecb, eventcb, cbarg);
    bufferevent_setwatermark(bev, EV_READ, 0, RILL_IN_HIGH);
    bufferevent_enable(bev, EV_READ);
}

/*
 * Before the request goes back to evhttp: the connection may serve another
 * one, and evhttp's own end-of-reply callback must see the output empty.
 */
static void unwatch(struct rill_request *r)
{
    struct bufferevent *bev = request_bev(r);
    r->watching = 0;
    if (bev)
        bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
}

/* Reason phrases evhttp 2.1.12 lacks (it says "Client Error" for a 429). */
const char *rill_status_reason(int status)
{
    switch (status) {
    case 308: return "Permanent Redirect";
    case 414: return "URI Too Long";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    default: return NULL; /* evhttp's own */
    }
}

/* ---- headers --------------------------------------------------------------- */

static void add_header(lua_State *L, struct evkeyvalq *h, const char *name, int vidx)
{
    size_t len;
    int t = lua_type(L, vidx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "header '%s' has a %s value (string, number or list expected)", name,
                   lua_typename(L, t));
    const char *v = lua_tolstring(L, vidx, &len);
    if (strlen(v) != len || evhttp_add_header(h, name, v) != 0)
        luaL_error(L, "header '%s' has a newline or NUL in its value", name);
}

/* Copies a Lua headers table (name → value or list of values) into h. */
static void set_headers(lua_State *L, int idx, struct evkeyvalq *h)
{
    if (lua_isnoneornil(L, idx))
        return;
    luaL_argexpected(L, lua_type(L, idx) == LUA_TTABLE, idx, "table");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "header names must be strings (got a %s)", luaL_typename(L, -2));
        const char *name = lua_tostring(L, -2);
        for (const char *p = name; *p; p++)
            if (!rill_is_tchar((unsigned char)*p))
                luaL_error(L, "invalid header name '%s'", name);
        if (!*name)
            luaL_error(L, "empty header name");
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                add_header(L, h, name, lua_gettop(L));
                lua_pop(L, 1);
            }
        } else {
            add_header(L, h, name, lua_gettop(L));
        }
        lua_pop(L, 1);
    }
}

static int check_status(lua_State *L, int idx)
{
    int ok;
    lua_Integer s = lua_tointegerx(L, idx, &ok);
    if (!ok || s < 100 || s > 599)
        luaL_error(L, "response status must be an integer from 100 to 599 (got %s)",
                   luaL_tolstring(L, idx, NULL));
    return (int)s;
}

/* evhttp's own default is text/html in ISO-8859-1 (notes/evhttp.md, landmine 17). */
static void default_content_type(struct evkeyvalq *h)
{
    if (!evhttp_find_header(h, "Content-Type"))
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
}

/* Prepares the status and headers of r from Lua arguments 1 and 2. */
/* The Date header, formatted once a second: evhttp would format it for every reply. */
static void add_date(struct evkeyvalq *h, struct event_base *base)
{
    static char date[40];
    static time_t formatted = -1;
    struct timeval now;
    event_base_gettimeofday_cached(base, &now);
    if (now.tv_sec != formatted) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm); /* the C locale */
        formatted = now.tv_sec;
    }
    if (!evhttp_find_header(h, "Date"))
        evhttp_add_header(h, "Date", date);
}

static int prepare_head(lua_State *L, struct rill_request *r, int has_body)
{
    int status = check_status(L, 1);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    set_headers(L, 2, h);
    if (has_body)
        default_content_type(h);
    add_date(h, r->task.w->base);
    return status;
}

/* Content-Length as evhttp would add it, without its printf: replies are most of the work. */
static void add_length(struct evkeyvalq *h, size_t len)
{
    char digits[24], *p = digits + sizeof digits;
    *--p = '\0';
    do
        *--p = (char)('0' + len % 10);
    while ((len /= 10) > 0);
    if (!evhttp_find_header(h, "Content-Length"))
        evhttp_add_header(h, "Content-Length", p);
}

/* ---- rill.core.out ----------------------------------------------------------- */

static struct rill_request *out_request(lua_State *L)
{
    struct rill_request *r = rill_request_current(L);
    if (!r->req)
        luaL_error(L, "the response was already sent");
    return r;
}

/* out.reply(status, headers, body): the whole response at once, with Content-Length. */
static int out_reply(lua_State *L)
{
    struct rill_request *r = out_request(L);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 3, NULL, &len);
    int status = prepare_head(L, r, body != NULL);
    struct evbuffer *buf = NULL;
    int may_have_body = status >= 200 && status != 204 && status != 304;
    if (body && may_have_body) /* for HEAD too: evhttp sends none, say what GET would send */
        add_length(evhttp_request_get_output_headers(r->req), len);
    if (body && evhttp_request_get_command(r->req) != EVHTTP_REQ_HEAD) {
        buf = r->task.w->scratch;
        evbuffer_add(buf, body, len);
    }
    unwatch(r);
    r->responded = 1;
    evhttp_send_reply(r->req, status, rill_status_reason(status), buf);
    r->req = NULL; /* evhttp frees it once written */
    return 0;
}

/* out.start(status, headers) → whether a body may follow (not for HEAD, 204, 304). */
static int out_start(lua_State *L)
{
    struct rill_request *r = out_request(L);
    int status = check_status(L, 1);
    int has_body = status >= 200 && status != 204 && status != 304;
    prepare_head(L, r, has_body);
    int body = has_body && evhttp_request_get_command(r->req) != EVHTTP_REQ_HEAD;
    evhttp_send_reply_start(r->req, status, rill_status_reason(status));
    r->responded = r->streaming = 1;
    r->task.w->stats.streams++;
    struct bufferevent *bev = request_bev(r);
    if (bev) {
        bufferevent_setwatermark(bev, EV_WRITE, RILL_OUT_LOW, 0);
        bufferevent_setwatermark(bev, EV_READ, 0, RILL_IN_HIGH); /* notes Q2: unread input */
        /* a stream may be idle for hours (notes Q3, landmine 3): no read timeout; the
           write timeout only runs while output waits, so it drops clients that stopped reading */
        bufferevent_set_timeouts(bev, NULL, rill_server_idle_timeout(r->srv));
        r->timeouts_lifted = 1;
    }
    lua_pushboolean(L, body);
    return 1;
}

static void on_drain(struct evhttp_connection *evcon, void *arg)
{
    struct rill_request *r = arg;
    (void)evcon;
    if (!r->wait_drain)
        return; /* evhttp calls this on every drain, waited for or not */
    r->wait_drain = 0;
    r->task.w->stats.blocked--;
    rill_task_resume(&r->task, 0);
}

static void drain_cancel(struct rill_task *t)
{
    ((struct rill_request *)t)->wait_drain = 0;
    t->w->stats.blocked--;
}

static void rearm_heartbeat(struct rill_request *r)
{
    if (r->heartbeat_every > 0)
        rill_timer_add(&r->heartbeat, r->heartbeat_every);
}

/* Hands the scratch buffer to evhttp as one chunk, always with the drain callback. */
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
    if (r->wrote_at == r->task.w->resumes || evbuffer_get_length(bufferevent_get_output(bev)))
        return 0;
    int chains = evbuffer_peek(buf, -1, NULL, v, 8);
    if (chains < 0 || chains > 8)
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
static void send_chunk(struct rill_request *r, struct evbuffer *buf)
{
    struct evhttp_request *req = r->req;
    struct bufferevent *bev = request_bev(r);
    size_t len = evbuffer_get_length(buf);
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

/*
 * An SSE stream idle for heartbeat_every seconds gets a comment line. rill.sse
 * writes whole events only, so this always falls between two events.
 */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct rill_request *r = arg;
    (void)fd, (void)what;
    if (!r->streaming || !r->req)
        return;
    evbuffer_add(r->task.w->scratch, ": heartbeat\n\n", 13);
    send_chunk(r, r->task.w->scratch);
}

/* out.sse(heartbeat_seconds): this response is an event stream (rill.sse). */
static int out_sse(lua_State *L)
{
    struct rill_request *r = out_request(L);
    double every = luaL_checknumber(L, 1);
    luaL_argcheck(L, every >= 0, 1, "heartbeat must be a non-negative number of seconds");
    r->sse = 1;
    r->heartbeat_every = every;
    evtimer_assign(&r->heartbeat, r->task.w->base, on_heartbeat, r);
    rearm_heartbeat(r);
    return 0;
}

void rill_response_stop_heartbeat(struct rill_request *r)
{
    if (r->heartbeat_every > 0)
        evtimer_del(&r->heartbeat);
    r->heartbeat_every = 0;
}

/*
 * out.write(chunk): one chunk of the chunked encoding; waits while the client
 * is behind. A published hub event goes out by reference to its shared bytes.
 */
static int out_write(lua_State *L)
{
    struct rill_request *r = out_request(L);
    struct evbuffer *buf = r->task.w->scratch;
    if (!r->streaming)
        return luaL_error(L, "write before the response started");
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
    struct rill_request *r = out_request(L);
    if (!r->streaming)
        return luaL_error(L, "finish before the response started");
    rill_response_end(r, 1);
    return 0;
}

void rill_response_end(struct rill_request *r, int clean)
{
    struct evhttp_request *req = r->req;
    rill_response_stop_heartbeat(r);
    unwatch(r);
    if (!clean) {
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
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    struct evbuffer *buf = r->task.w->scratch;
    evhttp_clear_headers(h); /* whatever a failed reply had set */
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (status == 503)
        evhttp_add_header(h, "Connection", "close");
    evbuffer_add_printf(buf, "%s (request %s)\n", what, rill_request_id(r));
    unwatch(r);
    r->responded = 1;
    evhttp_send_reply(r->req, status, rill_status_reason(status), buf);
    r->req = NULL;
}

static const luaL_Reg out_funcs[] = {
    {"reply", out_reply},   {"start", out_start}, {"write", out_write},
    {"finish", out_finish}, {"sse", out_sse},     {NULL, NULL},
};

void rill_open_response(lua_State *L)
{
    luaL_newlib(L, out_funcs);
    lua_setfield(L, -2, "out");
}
