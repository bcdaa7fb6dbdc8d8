/* SPDX-License-Identifier: MIT */
/*
 * Reply heads (replyhead.h). Every head rill sends is formatted here, with
 * the framing decided here: evhttp's own head writer would echo a handler's
 * Content-Length or Transfer-Encoding, give an HTTP/1.0 stream a
 * "Content-Length: 0" (notes/evhttp.md Q1), and append a body to a HEAD
 * reply (evhttp_send adds the buffer whatever the method). It must never
 * write a byte a reply's framing does not announce.
 */
#include "replyhead.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "tls.h"

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

/* ---- the framing --------------------------------------------------------------------- */

int rill_is_framing_field(const char *name)
{
    static const char *const fields[] = {
        "content-length", "transfer-encoding", "connection",       "keep-alive", "te",
        "trailer",        "upgrade",           "proxy-connection", NULL};
    for (const char *const *f = fields; *f; f++)
        if (strcasecmp(name, *f) == 0)
            return 1;
    return 0;
}

int rill_lists_token(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p; p = strchr(p, ',')) {
        p += strspn(p, ", \t");
        if (strncasecmp(p, token, n) == 0 && strchr(", \t", p[n]))
            return 1; /* strchr finds the terminating NUL too */
    }
    return 0;
}

static int header_is(struct evkeyvalq *h, const char *name, const char *value)
{
    const char *v = evhttp_find_header(h, name);
    return v && strcasecmp(v, value) == 0;
}

static int closing_all; /* a worker draining: every reply ends its connection */

void rill_framing_close_all(void)
{
    closing_all = 1;
}

struct rill_framing rill_framing_decide(struct evhttp_request *req, int status, enum rill_body kind,
                                        size_t len, int has_body, int want_close)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *connection = evhttp_find_header(in, "Connection");
    int bodiless = status == 204 || status == 304; /* 1xx is never a final status here */
    int http10 = req->minor == 0;
    /* as evhttp_send_done decides to keep an HTTP/1.0 connection: the exact value */
    int keep10 = http10 && header_is(in, "Connection", "keep-alive");
    struct rill_framing f = {.status = status, .len = len};
    f.body = !bodiless && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD;
    f.length = kind == RILL_BODY_WHOLE && !bodiless;
    f.chunked = kind == RILL_BODY_STREAM && !bodiless && !http10;
    f.typed = !bodiless && (has_body || kind == RILL_BODY_STREAM); /* a 304 keeps a handler's */
    f.close = want_close || closing_all || (connection && rill_lists_token(connection, "close")) ||
              (http10 && !keep10) ||
              (kind == RILL_BODY_STREAM && http10 && f.body) ||        /* close-delimited */
              (http10 && evhttp_find_header(in, "Transfer-Encoding")); /* RFC 9112 §6.1 */
    f.keep = keep10 && !f.close;
    return f;
}

/* ---- the head ------------------------------------------------------------------------- */

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

static void head_flush(struct head *h)
{
    evbuffer_add(h->out, h->bytes, h->n);
    h->n = 0;
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
    char line[] = "HTTP/1.1 200 "; /* the versions are 1.0 and 1.1 (httpcheck.c); status 200-599 */
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
 * The head of a reply to req: its output headers (a handler's, which hold
 * no framing field: response.c keeps them out), a type and a Date when
 * missing, then the framing f decided. A 204 has no Content-Type at all.
 */
static void add_head(struct head *w, struct evhttp_request *req, struct event_base *base,
                     const struct rill_framing *f)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    add_status_line(w, req, f->status);
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
    {
        if (f->status != 204 || strcasecmp(kv->key, "Content-Type") != 0)
            add_field(w, kv->key, kv->value);
    }
    if (f->typed && !evhttp_find_header(h, "Content-Type"))
        add_field(w, "Content-Type", DEFAULT_TYPE);
    if (!evhttp_find_header(h, "Date"))
        add_field(w, "Date", http_date(base));
    if (f->length)
        add_length(w, f->len);
    if (f->chunked)
        add_field(w, "Transfer-Encoding", "chunked");
    if (f->close)
        add_field(w, "Connection", "close");
    else if (f->keep)
        add_field(w, "Connection", "keep-alive");
    head_put(w, "\r\n", 2);
}

/* evhttp closes after the reply when its output headers say close (evhttp_send_done). */
static void mark_close(struct evhttp_request *req, const struct rill_framing *f)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (f->close && !header_is(h, "Connection", "close"))
        evhttp_add_header(h, "Connection", "close");
}

static struct bufferevent *bev_of(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

/*
 * The head (and a small body with it) goes into the output, then more, if
 * any (a file), and evhttp finishes the reply once the output drains.
 */
static void reply_whole(struct evhttp_request *req, struct bufferevent *bev,
                        struct event_base *base, const struct rill_framing *f, const char *body,
                        struct evbuffer *more)
{
    struct head head; /* not zeroed: 1 KiB per reply for nothing */
    head.out = bufferevent_get_output(bev);
    head.n = 0;
    add_head(&head, req, base, f);
    if (body && f->body && f->len)
        head_put(&head, body, f->len); /* a small body goes out with its head, in one add */
    req->response_code = f->status;
    req->chunked = 0; /* set by a chunked request body; this reply is not chunked */
    mark_close(req, f);
    /*
     * Written through the bufferevent on the next loop turn, not sent at once:
     * a direct send(2) here was measured to cost more kernel time per request
     * (16 us against 12.4 with wrk -c50) than it saves in epoll_ctl calls.
     */
    head_flush(&head);
    if (more)
        evbuffer_add_buffer(head.out, more); /* moves its chains: allocates nothing */
    /* as evhttp's own write: no read callback (EOF still reaches the error callback) */
    bufferevent_data_cb writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    bufferevent_getcb(bev, NULL, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, NULL, writecb, eventcb, cbarg);
    evhttp_send_reply_end(req); /* output not empty: evhttp finishes when it drains */
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void rill_reply_whole(struct evhttp_request *req, struct event_base *base,
                      const struct rill_framing *f, const char *body)
{
    struct bufferevent *bev = bev_of(req);
    if (!bev) { /* the client is gone: evhttp frees the request */
        evhttp_send_reply(req, f->status, NULL, NULL);
        return;
    }
    reply_whole(req, bev, base, f, body, NULL);
}

/*
 * A small file goes out with its head, in the same write (one packet, not
 * a head and then a sendfile); read now, so a file cut short since it was
 * opened fails the reply before anything is sent.
 */
#define SMALL_FILE (32 * 1024)

static int reply_small_file(struct evhttp_request *req, struct bufferevent *bev,
                            struct event_base *base, const struct rill_framing *f, int fd,
                            off_t offset)
{
    char *body = malloc(f->len);
    size_t got = 0;
    while (body && got < f->len) {
        ssize_t n = pread(fd, body + got, f->len - got, offset + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!body || got < f->len) {
        free(body);
        return -1;
    }
    reply_whole(req, bev, base, f, body, NULL);
    free(body);
    return 0;
}

int rill_reply_file(struct evhttp_request *req, struct event_base *base,
                    const struct rill_framing *f, int fd, off_t offset)
{
    struct bufferevent *bev = bev_of(req);
    if (!bev || !f->body || f->len == 0) { /* gone, a HEAD, or nothing to send */
        close(fd);
        if (!bev)
            evhttp_send_reply(req, f->status, NULL, NULL);
        else
            reply_whole(req, bev, base, f, NULL, NULL);
        return 0;
    }
    if (f->len <= SMALL_FILE)
        return reply_small_file(req, bev, base, f, fd, offset);
    /*
     * The file goes into an evbuffer of its own first, so a failure leaves
     * nothing sent. Marked as draining to a socket, as the bufferevent's
     * output is, its chain is sent with sendfile(2). A TLS connection's
     * cipher must read the bytes: the file is mapped, so its pages are the
     * page cache's, shared by every client of it, not a heap copy per
     * request (see docs/static.md: it must not be truncated meanwhile).
     */
    int tls = rill_tls_is(bev);
    int flags = EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_LOCKING;
    if (tls)
        flags |= EVBUF_FS_DISABLE_SENDFILE;
    /*
     * Mapped here for TLS, so adding it cannot take libevent's path that
     * fails without freeing the segment (a materialize in the add): only its
     * err: path, which drops our reference itself.
     */
    struct evbuffer_file_segment *seg =
        evbuffer_file_segment_new(fd, offset, (ev_off_t)f->len, flags);
    if (!seg) {
        close(fd); /* a failed segment leaves it open */
        return -1;
    }
    struct evbuffer *file = evbuffer_new();
    if (file && !tls)
        evbuffer_set_flags(file, EVBUFFER_FLAG_DRAINS_TO_FD);
    /* on failure evbuffer_add_file_segment has freed seg itself (libevent 2.1.12) */
    if (!file || evbuffer_add_file_segment(file, seg, 0, (ev_off_t)f->len) != 0) {
        if (!file)
            evbuffer_file_segment_free(seg);
        if (file)
            evbuffer_free(file);
        return -1;
    }
    evbuffer_file_segment_free(seg); /* the chain holds its own reference */
    reply_whole(req, bev, base, f, NULL, file);
    evbuffer_free(file);
    return 0;
}

void rill_reply_plain(struct evhttp_request *req, struct event_base *base, int status,
                      const char *body, int close)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_clear_headers(h); /* whatever a failed reply had set */
    evhttp_add_header(h, "Content-Type", DEFAULT_TYPE);
    struct rill_framing f =
        rill_framing_decide(req, status, RILL_BODY_WHOLE, strlen(body), 1, close);
    rill_reply_whole(req, base, &f, body);
}

/*
 * evhttp_send_reply_start is what makes evhttp take a reply as started (it
 * resets the connection's write callback, which may still be the last
 * reply's "done"), but it writes evhttp's head: that head is replaced by
 * ours before the loop can send a byte of it.
 */
void rill_reply_start_stream(struct evhttp_request *req, struct event_base *base,
                             struct evbuffer *scratch, const struct rill_framing *f)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct bufferevent *bev = bev_of(req);
    struct head head;
    head.out = scratch;
    head.n = 0;
    add_head(&head, req, base, f);
    head_flush(&head);
    evhttp_clear_headers(h); /* an idle stream may be held for hours: sent headers go */
    mark_close(req, f);
    if (!bev) { /* the client is gone: nothing goes out */
        evbuffer_drain(scratch, evbuffer_get_length(scratch));
        evhttp_send_reply_start(req, f->status, rill_status_reason(f->status));
        return;
    }
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t before = evbuffer_get_length(out); /* 0: no reply is in flight on a connection */
    evhttp_send_reply_start(req, f->status, rill_status_reason(f->status));
    /*
     * A socket bufferevent keeps the front of its output frozen but while it
     * writes; a TLS one never freezes it (freezing it would stop its writes).
     */
    int frozen = !rill_tls_is(bev);
    if (frozen)
        evbuffer_unfreeze(out, 1);
    if (before == 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
    } else { /* never seen; keep what was queued, drop evhttp's head after it */
        struct evbuffer *keep = evbuffer_new();
        if (keep) {
            evbuffer_remove_buffer(out, keep, before);
            evbuffer_drain(out, evbuffer_get_length(out));
            evbuffer_add_buffer(out, keep);
            evbuffer_free(keep);
        }
    }
    if (frozen)
        evbuffer_freeze(out, 1);
    evbuffer_add_buffer(out, scratch);
    evhttp_clear_headers(h); /* what evhttp added (Date, Transfer-Encoding, ...) */
    mark_close(req, f);
    req->chunked = f->chunked && f->body; /* a HEAD's "chunked" has no chunks, nor a last one */
}
