/* SPDX-License-Identifier: MIT */
/*
 * The access log (--access-log, --access-log-format): one line per request,
 * formatted when it ends, combined or JSON. Owns the log's descriptor, an
 * in-memory buffer of whole lines and the count of dropped ones.
 *
 * It must never block the loop: the descriptor is O_NONBLOCK, the buffer is
 * flushed once per loop turn (and when a pipe turns writable again), and
 * past BUFFER_MAX a new line is dropped and counted rather than queued, so a
 * log reader that stops reading costs lines, never a stalled stream. Each
 * write is of whole lines: a pipe's writes of at most PIPE_BUF bytes are
 * atomic, and a file is O_APPEND, so the workers of one master can share it.
 * No Lua and no evhttp here: server.c hands over a finished record.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "log.h"

#define BUFFER_MAX (1024 * 1024) /* bytes of lines waiting; past it lines are dropped */
#define FILE_CHUNK (64 * 1024)   /* a file's write: whole lines up to this much */

static struct {
    int fd; /* -1: off */
    int json;
    int regular; /* a regular file: never EAGAIN, no EV_WRITE (epoll refuses files) */
    char *path;  /* NULL: stdout, never reopened */
    struct event_base *base;
    struct evbuffer *out;
    struct event *flush;    /* activated once per loop turn that added a line */
    struct event *writable; /* a pipe or socket that said EAGAIN */
    int waiting;            /* writable is armed */
    unsigned long dropped;
    int failed; /* a write error was logged */
} lg = {.fd = -1};

/* ---- the descriptor ------------------------------------------------------------ */

static void on_writable(evutil_socket_t fd, short what, void *arg);

/*
 * stdout through /proc: a new open file description, so O_NONBLOCK does not
 * reach the terminal or the shell that share fd 1; a socket cannot be
 * reopened that way, and is dup'd.
 */
static int open_fd(const char *path)
{
    int flags = O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC;
    if (path)
        return open(path, flags | O_CREAT, 0644);
    int fd = open("/proc/self/fd/1", flags);
    if (fd < 0 && (fd = fcntl(1, F_DUPFD_CLOEXEC, 3)) >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* fd becomes the log's descriptor (a reopen closes the last one). */
static void use_fd(int fd)
{
    struct stat st;
    if (lg.writable)
        event_free(lg.writable);
    lg.writable = NULL;
    lg.waiting = 0;
    if (lg.fd >= 0)
        close(lg.fd);
    lg.fd = fd;
    lg.regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!lg.regular)
        lg.writable = event_new(lg.base, fd, EV_WRITE, on_writable, NULL);
}

/* ---- flushing ------------------------------------------------------------------- */

static unsigned long count_lines(struct evbuffer *b)
{
    unsigned long n = 0;
    struct evbuffer_ptr p = evbuffer_search(b, "\n", 1, NULL);
    while (p.pos >= 0) {
        n++;
        evbuffer_ptr_set(b, &p, 1, EVBUFFER_PTR_ADD);
        p = evbuffer_search(b, "\n", 1, &p);
    }
    return n;
}

/* How much of the buffer's front to write at once: whole lines, at most cap unless one is longer.
 */
static size_t chunk_len(size_t cap)
{
    size_t len = evbuffer_get_length(lg.out), n = len < cap ? len : cap;
    const char *p = (const char *)evbuffer_pullup(lg.out, (ev_ssize_t)n);
    const char *nl = p ? memrchr(p, '\n', n) : NULL;
    if (nl)
        return (size_t)(nl - p) + 1;
    struct evbuffer_ptr end = evbuffer_search(lg.out, "\n", 1, NULL);
    return end.pos >= 0 ? (size_t)end.pos + 1 : len;
}

/*
 * Writes what the buffer holds until it is empty or the descriptor is full
 * (a pipe: wait until it is writable). A write error drops what is buffered,
 * counted, and says so once.
 */
static void flush(void)
{
    while (lg.fd >= 0 && evbuffer_get_length(lg.out) > 0) {
        size_t n = chunk_len(lg.regular ? FILE_CHUNK : PIPE_BUF);
        ssize_t w = write(lg.fd, evbuffer_pullup(lg.out, (ev_ssize_t)n), n);
        if (w > 0) {
            evbuffer_drain(lg.out, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (lg.writable && !lg.waiting && event_add(lg.writable, NULL) == 0)
                lg.waiting = 1;
            return;
        }
        if (!lg.failed)
            rill_log("access log: write failed: %s (lines are dropped)", strerror(errno));
        lg.failed = 1;
        lg.dropped += count_lines(lg.out);
        evbuffer_drain(lg.out, evbuffer_get_length(lg.out));
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (!lg.waiting)
        flush();
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    lg.waiting = 0;
    flush();
}

/* ---- formatting ----------------------------------------------------------------- */

/* A line being built: reused, grown as needed. */
static struct {
    char *p;
    size_t len, cap;
} line;

static int grow(size_t more)
{
    if (line.len + more <= line.cap)
        return 0;
    size_t cap = line.cap ? line.cap : 1024;
    while (cap < line.len + more)
        cap *= 2;
    char *p = realloc(line.p, cap);
    if (!p)
        return -1;
    line.p = p;
    line.cap = cap;
    return 0;
}

static void put(const char *s, size_t n)
{
    if (grow(n) == 0) {
        memcpy(line.p + line.len, s, n);
        line.len += n;
    }
}

static void putf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void putf(const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/*
 * Combined: as nginx escapes a logged value, a quote, a backslash, a control
 * byte or a byte past ASCII becomes \xHH, so a line is one line of ASCII and
 * its quoted fields end at the first bare quote. Empty or unknown: "-".
 */
static void put_combined(const char *s)
{
    if (!s || !*s) {
        put("-", 1);
        return;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            putf("\\x%02X", c);
        else
            put((const char *)&c, 1);
    }
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong, surrogate, > U+10FFFF), or 0.
 */
static int utf8_len(const unsigned char *s)
{
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        unsigned lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        unsigned lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* A JSON string (RFC 8259): NULL is null; a byte that is not valid UTF-8 becomes U+FFFD. */
static void put_json(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!s) {
        put("null", 4);
        return;
    }
    put("\"", 1);
    while (*s) {
        int n;
        if (*s == '"' || *s == '\\') {
            put("\\", 1);
            put((const char *)s++, 1);
        } else if (*s < 0x20 || *s == 0x7f) {
            putf("\\u%04x", *s++);
        } else if (*s < 0x80) {
            put((const char *)s++, 1);
        } else if ((n = utf8_len(s)) > 0) {
            put((const char *)s, (size_t)n);
            s += n;
        } else {
            put("\\ufffd", 6);
            s++;
        }
    }
    put("\"", 1);
}

static const char *const END_NAMES[] = {
    "ok",    "ok",       "client_gone", "handler_end", "error",
    "drain", "shutdown", "slow_client", "timeout",     "refused",
};

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* [10/Oct/2000:13:55:36 +0000], in UTC, in the C locale's month names whatever the locale. */
static void put_clf_time(const struct timeval *tv)
{
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t t = tv->tv_sec;
    gmtime_r(&t, &tm);
    putf("[%02d/%s/%04d:%02d:%02d:%02d +0000]", tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
         tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* remote - - [time] "METHOD target HTTP/x.y" status bytes "referer" "ua" ms id end */
static void format_combined(const struct rill_access *a, const char *id, const char *end, double ms)
{
    put_combined(a->peer);
    put(" - - ", 5);
    put_clf_time(&a->start);
    put(" \"", 2);
    if (a->method && a->target) {
        put_combined(a->method);
        put(" ", 1);
        put_combined(a->target);
        putf(" HTTP/%d.%d", a->major, a->minor);
    } else {
        put("-", 1);
    }
    putf("\" %d %zu \"", a->status, a->sent);
    put_combined(a->referer);
    put("\" \"", 3);
    put_combined(a->ua);
    putf("\" %.3f ", ms);
    put_combined(id);
    putf(" %s\n", end);
}

static void format_json(const struct rill_access *a, const char *id, const char *end, double ms)
{
    struct tm tm;
    time_t t = a->start.tv_sec;
    gmtime_r(&t, &tm);
    putf("{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"remote_addr\":", tm.tm_year + 1900,
         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
         (int)(a->start.tv_usec / 1000));
    put_json(a->peer);
    put(",\"method\":", 10);
    put_json(a->method);
    put(",\"target\":", 10);
    put_json(a->target);
    if (a->method)
        putf(",\"http_version\":\"%d.%d\"", a->major, a->minor);
    else
        put(",\"http_version\":null", 20);
    putf(",\"status\":%d,\"bytes_sent\":%zu,\"duration_ms\":%.3f,\"request_id\":", a->status,
         a->sent, ms);
    put_json(id);
    put(",\"user_agent\":", 14);
    put_json(a->ua);
    put(",\"referer\":", 11);
    put_json(a->referer);
    putf(",\"end\":\"%s\"}\n", end);
}

/* ---- records ------------------------------------------------------------------- */

static char *copy_into(char **at, const char *s)
{
    char *dst = *at;
    size_t n = strlen(s) + 1;
    memcpy(dst, s, n);
    *at += n;
    return dst;
}

struct rill_access *rill_access_new(const char *method, const char *target, int major, int minor,
                                    const char *peer, const char *ua, const char *referer)
{
    if (lg.fd < 0)
        return NULL;
    size_t n = (target ? strlen(target) + 1 : 0) + (peer ? strlen(peer) + 1 : 0) +
               (ua ? strlen(ua) + 1 : 0) + (referer ? strlen(referer) + 1 : 0);
    struct rill_access *a = calloc(1, sizeof *a + n);
    if (!a)
        return NULL;
    char *at = (char *)(a + 1);
    gettimeofday(&a->start, NULL);
    clock_gettime(CLOCK_MONOTONIC, &a->t0);
    a->method = method;
    a->target = target ? copy_into(&at, target) : NULL;
    a->peer = peer ? copy_into(&at, peer) : NULL;
    a->ua = ua ? copy_into(&at, ua) : NULL;
    a->referer = referer ? copy_into(&at, referer) : NULL;
    a->major = major;
    a->minor = minor;
    a->head = method && strcmp(method, "HEAD") == 0;
    return a;
}

void rill_access_done(struct rill_access *a, const char *id)
{
    if (!a)
        return;
    enum rill_end end = a->end;
    if (end == RILL_END_NONE)
        end = a->streamed ? RILL_END_HANDLER_END : RILL_END_OK;
    if (a->status == 0)
        a->status = 499; /* nothing was sent: the client left first (nginx's code) */
    if (lg.fd >= 0) {
        line.len = 0;
        double ms = elapsed_ms(&a->t0);
        if (lg.json)
            format_json(a, id, END_NAMES[end], ms);
        else
            format_combined(a, id, END_NAMES[end], ms);
        if (line.len == 0 || line.p[line.len - 1] != '\n' ||
            evbuffer_get_length(lg.out) + line.len > BUFFER_MAX) {
            lg.dropped++;
        } else {
            evbuffer_add(lg.out, line.p, line.len);
            if (!lg.waiting)
                event_active(lg.flush, EV_TIMEOUT, 1);
        }
    }
    free(a);
}

/* ---- the log ------------------------------------------------------------------- */

int rill_accesslog_open(struct event_base *base, const char *path, int json, char *err,
                        size_t errlen)
{
    if (!path || strcmp(path, "off") == 0)
        return 0;
    int stdout_log = strcmp(path, "-") == 0;
    int fd = open_fd(stdout_log ? NULL : path);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the access log %s: %s", path, strerror(errno));
        return -1;
    }
    lg.base = base;
    lg.json = json;
    lg.path = stdout_log ? NULL : strdup(path);
    lg.out = evbuffer_new();
    lg.flush = event_new(base, -1, 0, on_flush, NULL);
    use_fd(fd);
    return 0;
}

int rill_accesslog_enabled(void)
{
    return lg.fd >= 0;
}

void rill_accesslog_reopen(void)
{
    if (lg.fd < 0 || !lg.path)
        return;
    int fd = open_fd(lg.path);
    if (fd < 0) {
        rill_log("access log: cannot reopen %s: %s (still writing to the old file)", lg.path,
                 strerror(errno));
        return;
    }
    flush(); /* what was buffered goes to the old file, as far as it can */
    use_fd(fd);
    lg.failed = 0;
    flush();
}

unsigned long rill_accesslog_dropped(void)
{
    return lg.dropped;
}

void rill_accesslog_close(void)
{
    if (lg.fd < 0)
        return;
    lg.waiting = 0;
    flush();
    if (lg.writable)
        event_free(lg.writable);
    lg.writable = NULL;
    event_free(lg.flush);
    evbuffer_free(lg.out);
    close(lg.fd);
    free(lg.path);
    free(line.p);
    line.p = NULL;
    line.len = line.cap = 0;
    lg.fd = -1;
}
