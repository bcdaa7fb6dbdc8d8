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
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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

/* RFC 9110's reason phrases (evhttp 2.1.12 says "Client Error" for a 429). */
const char *rill_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: break;
    }
    static const char *classes[] = {"Informational", "Success", "Redirection", "Client Error",
                                    "Server Error"};
    return status >= 100 && status < 600 ? classes[status / 100 - 1] : "Unknown";
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
static const char DEFAULT_TYPE[] = "text/plain; charset=utf-8";

/* The Date value, formatted once a second: evhttp would format it for every reply. */
static const char *http_date(struct event_base *base)
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
    return date;
}

/* The headers of a stream's head, which evhttp formats: the type and the Date it lacks. */
static void complete_stream_head(struct rill_request *r, int has_body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    if (has_body && !evhttp_find_header(h, "Content-Type"))
        evhttp_add_header(h, "Content-Type", DEFAULT_TYPE);
    if (!evhttp_find_header(h, "Date"))
        evhttp_add_header(h, "Date", http_date(r->task.w->base));
}

/* Prepares the status and headers of r from Lua arguments 1 and 2. */
static int prepare_head(lua_State *L, struct rill_request *r)
{
    int status = check_status(L, 1);
    set_headers(L, 2, evhttp_request_get_output_headers(r->req));
    return status;
}

/* ---- rill.core.out ----------------------------------------------------------- */

static struct rill_request *out_request(lua_State *L)
{
    struct rill_request *r = rill_request_current(L);
    if (!r->req)
        luaL_error(L, "the response was already sent");
    return r;
}

static int header_is(struct evkeyvalq *h, const char *name, const char *value)
{
    const char *v = evhttp_find_header(h, name);
    return v && strcasecmp(v, value) == 0;
}

/*
 * A reply head is built in one piece and added to the output at once: every
 * evbuffer_add runs the output's callbacks, which cost more than the copy.
 */
struct head {
    struct evbuffer *out;
    size_t n;
    char bytes[1024];
};

static void head_put(struct head *h, const char *s, size_t len)
{
    if (h->n + len > sizeof h->bytes) {
        evbuffer_add(h->out, h->bytes, h->n);
        h->n = 0;
        if (len > sizeof h->bytes) {
            evbuffer_add(h->out, s, len);
            return;
        }
    }
    memcpy(h->bytes + h->n, s, len);
    h->n += len;
}

static void add_field(struct head *h, const char *name, const char *value)
{
    head_put(h, name, strlen(name));
    head_put(h, ": ", 2);
    head_put(h, value, strlen(value));
    head_put(h, "\r\n", 2);
}

static void add_status_line(struct head *h, struct evhttp_request *req, int status)
{
    char line[] = "HTTP/1.1 200 "; /* the versions are 1.0 and 1.1 (httpcheck.c); status 100-599 */
    line[5] = (char)('0' + req->major), line[7] = (char)('0' + req->minor);
    line[9] = (char)('0' + status / 100), line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    head_put(h, line, sizeof line - 1);
    const char *reason = rill_status_reason(status);
    head_put(h, reason, strlen(reason));
    head_put(h, "\r\n", 2);
}

static void add_length(struct head *h, size_t len)
{
    char digits[24], *p = digits + sizeof digits;
    *--p = '\0';
    do
        *--p = (char)('0' + len % 10);
    while ((len /= 10) > 0);
    add_field(h, "Content-Length", p);
}

/*
 * The head of a whole reply, formatted here as evhttp's make_header_response
 * would (notes/evhttp.md Q4), without its printf per line or the copies into
 * its header list: the handler's headers, a type and a Date when missing, a
 * length whenever there may be a body (for HEAD, the length GET would have),
 * keep-alive for an HTTP/1.0 client that asked, a close for one that asked.
 */
static void add_head(struct head *w, struct rill_request *r, int status, int has_body, size_t len)
{
    struct evhttp_request *req = r->req;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    int keepalive = header_is(in, "Connection", "keep-alive");
    int close = header_is(in, "Connection", "close");
    int may_have_body = status >= 200 && status != 204 && status != 304;
    int head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    add_status_line(w, req, status);
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
    {
        if (!close || strcasecmp(kv->key, "Connection") != 0)
            add_field(w, kv->key, kv->value);
    }
    if (has_body && !evhttp_find_header(h, "Content-Type"))
        add_field(w, "Content-Type", DEFAULT_TYPE);
    if (!evhttp_find_header(h, "Date"))
        add_field(w, "Date", http_date(r->task.w->base));
    if (may_have_body && (has_body || (!head && (req->minor >= 1 || keepalive))) &&
        !evhttp_find_header(h, "Content-Length") && !evhttp_find_header(h, "Transfer-Encoding"))
        add_length(w, len);
    if (req->minor == 0 && keepalive)
        add_field(w, "Connection", "keep-alive");
    if (close)
        add_field(w, "Connection", "close");
    head_put(w, "\r\n", 2);
}

/*
 * A whole reply, written here (add_head). evhttp is then told the reply is
 * written (send_reply_end), and finishes the exchange (keep-alive or close,
 * the next pipelined request) when the output drains.
 */
static void send_reply(struct rill_request *r, int status, const char *body, size_t len)
{
    struct evhttp_request *req = r->req;
    struct bufferevent *bev = request_bev(r);
    if (!bev) { /* the client is gone: evhttp frees the request */
        evhttp_send_reply(req, status, NULL, NULL);
        return;
    }
    struct head head; /* not zeroed: 1 KiB per reply for nothing */
    head.out = bufferevent_get_output(bev);
    head.n = 0;
    add_head(&head, r, status, body != NULL, len);
    if (body && len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        head_put(&head, body, len); /* a small body goes out with its head, in one add */
    req->response_code = status;
    req->chunked = 0; /* set by a chunked request body; this reply is not chunked */
    /*
     * Written through the bufferevent on the next loop turn, not sent at once:
     * a direct send(2) here was measured to cost more kernel time per request
     * (16 us against 12.4 with wrk -c50) than it saves in epoll_ctl calls.
     */
    evbuffer_add(head.out, head.bytes, head.n);
    /* as evhttp's own write: no read callback (EOF still reaches the error callback) */
    bufferevent_data_cb writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    bufferevent_getcb(bev, NULL, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, NULL, writecb, eventcb, cbarg);
    evhttp_send_reply_end(req); /* output not empty: evhttp finishes when it drains */
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* out.reply(status, headers, body): the whole response at once, with Content-Length. */
static int out_reply(lua_State *L)
{
    struct rill_request *r = out_request(L);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 3, NULL, &len);
    int status = prepare_head(L, r);
    unwatch(r);
    r->responded = 1;
    send_reply(r, status, body, len);
    r->req = NULL; /* evhttp frees it once written */
    return 0;
}

/*
 * Once a stream's head is written, its header list only matters to evhttp
 * for "Connection: close" at the end: the rest is freed, as an idle stream
 * may be held for hours (notes/evhttp.md Q4).
 */
static void forget_sent_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    int close = header_is(h, "Connection", "close");
    evhttp_clear_headers(h);
    if (close)
        evhttp_add_header(h, "Connection", "close");
}

/* out.start(status, headers) → whether a body may follow (not for HEAD, 204, 304). */
static int out_start(lua_State *L)
{
    struct rill_request *r = out_request(L);
    int status = prepare_head(L, r);
    int has_body = status >= 200 && status != 204 && status != 304;
    complete_stream_head(r, has_body);
    int body = has_body && evhttp_request_get_command(r->req) != EVHTTP_REQ_HEAD;
    evhttp_send_reply_start(r->req, status, rill_status_reason(status));
    forget_sent_headers(r->req);
    r->responded = r->streaming = 1;
    r->task.w->stats.streams++;
    struct bufferevent *bev = request_bev(r);
    if (bev) {
        bufferevent_setwatermark(bev, EV_WRITE, RILL_OUT_LOW, 0);
        bufferevent_setwatermark(bev, EV_READ, 0, RILL_IN_HIGH); /* notes Q2: unread input */
        /* a stream may be idle for hours (notes Q3, landmine 3): conn.c's inactivity
           timer drops its client only when output waits unread */
    }
    lua_pushboolean(L, body);
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

static void rearm_heartbeat(struct rill_request *r)
{
    if (r->heartbeat_every > 0)
        rill_timer_add(&r->heartbeat, r->heartbeat_every);
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
    rill_response_unpump(r);
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

/*
 * Feeds a pumped stream: whatever its subscription has, as one chunk per
 * turn, until it waits (the hub calls again), the client is slow (on_drain
 * calls again), the topic closes (the stream ends) or the hub drops it.
 */
static void pump(void *arg)
{
    struct rill_request *r = arg;
    struct evbuffer *buf = r->task.w->scratch;
    r->task.w->resumes++; /* a turn of the stream, as a resume is (write_now) */
    for (;;) {
        enum rill_pump_result res = r->wait_drain ? rill_hub_pump_check(r->pump)
                                                  : rill_hub_pump_into(r->pump, buf, RILL_OUT_HIGH);
        if (evbuffer_get_length(buf))
            send_chunk(r, buf);
        if (res == RILL_PUMP_END) {
            rill_response_end(r, 1);
            return;
        }
        if (res == RILL_PUMP_CUT) {
            r->task.abort(&r->task); /* cut off: the client resumes with its last id */
            return;
        }
        if (r->wait_drain)
            return; /* on_drain calls again */
        struct bufferevent *bev = request_bev(r);
        if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > RILL_OUT_HIGH) {
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
    if (rill_hub_pump(s, &r->task, pump, r) != 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_getupvalue(L, 1, 1);
    r->pump_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the subscription stays alive */
    r->pump = s;
    if (first && len) {
        evbuffer_add(r->task.w->scratch, first, len);
        send_chunk(r, r->task.w->scratch);
    }
    lua_pushboolean(L, 1); /* the first pump turn comes once this handler has ended */
    return 1;
}

static const luaL_Reg out_funcs[] = {
    {"reply", out_reply}, {"start", out_start}, {"write", out_write}, {"finish", out_finish},
    {"sse", out_sse},     {"pump", out_pump},   {NULL, NULL},
};

void rill_open_response(lua_State *L)
{
    luaL_newlib(L, out_funcs);
    lua_setfield(L, -2, "out");
}
