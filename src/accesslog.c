/* SPDX-License-Identifier: MIT */
/*
 * The access log (--access-log, --access-log-format): one line per request,
 * formatted when it ends, combined or JSON. Owns the log's descriptor, an
 * in-memory buffer of whole lines and the count of dropped ones.
 *
 * It must not block the loop on a pipe or socket: the descriptor is
 * O_NONBLOCK (a socket on stdout: send(MSG_DONTWAIT)), the buffer is
 * flushed in the loop turn of a line after a quiet spell, else in batches
 * every 50 ms (and when a pipe turns writable again), and
 * past BUFFER_MAX a new line is dropped and counted rather than queued, so a
 * log reader that stops reading costs lines, never a stalled stream. (A
 * regular file ignores O_NONBLOCK: a stalled disk blocks, as nginx's does.)
 * A line is formatted straight into the buffer's free end, and written
 * from there: the log costs /hello a few percent, no copy is cheap enough.
 * Each write is of whole lines: fields are capped so a line fits PIPE_BUF,
 * a pipe's writes of at most PIPE_BUF bytes are atomic, and a file is
 * O_APPEND, so the workers of one master can share it.
 * No Lua and no evhttp here: server.c hands over a finished record.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "log.h"
#include "metrics.h"

#define BUFFER_MAX (1024 * 1024) /* bytes of lines waiting; past it lines are dropped */
/*
 * Lines wait up to FLUSH_MS (or until FLUSH_BYTES are waiting) and go out in
 * one write: a write per request would cost more than the line's making.
 */
#define FLUSH_MS    50
#define FLUSH_BYTES (64 * 1024)
#define FILE_CHUNK  (64 * 1024) /* a file's write: whole lines up to this much */
#define LINE_ROOM   8192        /* free room a line is formatted in: twice the longest line */
#define FIRST_CAP   (FLUSH_BYTES + LINE_ROOM)
#define BUFFER_CAP  (2 * BUFFER_MAX + LINE_ROOM) /* see make_room */
/* A logged field's cap in bytes, "..." included: a line always fits PIPE_BUF (4096). */
#define TARGET_MAX     2048
#define HEADER_MAX     512  /* user agent, referer */
#define CLOSE_DRAIN_MS 1000 /* at close: how long to wait for a full pipe or socket */

static struct {
    int fd; /* -1: off */
    int json;
    int regular; /* a regular file: never EAGAIN, no EV_WRITE (epoll refuses files) */
    int sock;    /* a socket on stdout, shared with others: send(MSG_DONTWAIT), fd stays blocking */
    int midline; /* the last write ended inside a line */
    int torn;    /* a half line was left (its rest dropped): the next write starts with "\n" */
    char *path;  /* NULL: stdout, never reopened */
    struct event_base *base;
    struct event *flush;    /* writes what waits: at once after a quiet spell, else in 50 ms */
    double last_write;      /* when flush last ran (monotonic, coarse) */
    struct event *writable; /* a pipe or socket that said EAGAIN */
    int waiting;            /* writable is armed */
    unsigned long dropped;
    int failed; /* a write error was logged */
} lg = {.fd = -1};

/*
 * Whole lines waiting, in [head, len); a line is formatted at len, into room
 * the buffer had before it began (grown up to BUFFER_MAX + LINE_ROOM, never
 * shrunk). A line that does not fit is dropped, the buffer as it was.
 */
static struct {
    char *p;
    size_t head, len, cap;
    size_t line; /* where the line being formatted began */
    int failed;  /* it did not fit */
} out;

static size_t waiting(void)
{
    return out.len - out.head;
}

/* ---- the descriptor ------------------------------------------------------------ */

static void on_writable(evutil_socket_t fd, short what, void *arg);

/*
 * stdout through /proc: a new open file description, so O_NONBLOCK does not
 * reach the terminal or the shell that share fd 1. A socket (journald)
 * cannot be reopened that way: it is dup'd and its description left alone
 * (O_NONBLOCK there would reach fd 1 and fd 2), each write a
 * send(MSG_DONTWAIT). Without /proc, a pipe or a terminal is dup'd as it is:
 * its writes may block.
 */
static int open_fd(const char *path, int *sock)
{
    int flags = O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC;
    struct stat st;
    *sock = 0;
    if (path)
        return open(path, flags | O_CREAT, 0644);
    if (fstat(1, &st) == 0 && S_ISSOCK(st.st_mode)) {
        *sock = 1;
        return fcntl(1, F_DUPFD_CLOEXEC, 3);
    }
    int fd = open("/proc/self/fd/1", flags);
    return fd >= 0 ? fd : fcntl(1, F_DUPFD_CLOEXEC, 3);
}

/* fd becomes the log's descriptor (a reopen closes the last one). */
static void use_fd(int fd, int sock)
{
    struct stat st;
    if (lg.writable)
        event_free(lg.writable);
    lg.writable = NULL;
    lg.waiting = 0;
    if (lg.fd >= 0)
        close(lg.fd);
    lg.fd = fd;
    lg.sock = sock;
    lg.midline = lg.torn = 0;
    lg.regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!lg.regular)
        lg.writable = event_new(lg.base, fd, EV_WRITE, on_writable, NULL);
}

/* ---- flushing ------------------------------------------------------------------- */

/* The lines waiting. A line is never empty: a "\n" right after another (or first) is
   the end a torn line was given, not a line, and is not counted. */
static unsigned long count_lines(void)
{
    unsigned long n = 0;
    const char *start = out.p + out.head, *p = start, *end = out.p + out.len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n += p > start && p[-1] != '\n';
        p++;
    }
    return n;
}

static void drop_waiting(void)
{
    lg.dropped += count_lines();
    out.head = out.len = 0;
}

/* How much of the buffer's front to write at once: whole lines, at most cap unless one is longer.
 */
static size_t chunk_len(size_t cap)
{
    size_t len = waiting(), n = len < cap ? len : cap;
    const char *p = out.p + out.head, *nl = memrchr(p, '\n', n);
    if (nl)
        return (size_t)(nl - p) + 1;
    nl = memchr(p, '\n', len);
    return nl ? (size_t)(nl - p) + 1 : len;
}

/*
 * Writes what the buffer holds until it is empty or the descriptor is full
 * (a pipe: wait until it is writable). A write error drops what is buffered,
 * counted, and says so once.
 */
static void flush(void)
{
    while (lg.fd >= 0 && waiting() > 0) {
        size_t n = chunk_len(lg.regular ? FILE_CHUNK : PIPE_BUF);
        const char *p = out.p + out.head;
        ssize_t w = lg.sock ? send(lg.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) : write(lg.fd, p, n);
        if (w > 0) {
            lg.midline = p[w - 1] != '\n';
            out.head += (size_t)w;
            if (out.head == out.len)
                out.head = out.len = 0;
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
            rill_log("access log: write failed: %s (lines are dropped)",
                     w == 0 ? "nothing written" : strerror(errno));
        lg.failed = 1;
        lg.torn = lg.midline; /* the next line begins with "\n", rather than glue onto the half */
        drop_waiting();
    }
}

static double coarse_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    lg.last_write = coarse_now();
    if (!lg.waiting)
        flush();
}

/*
 * A line after a quiet spell (no write for FLUSH_MS) goes out this loop
 * turn, so a quiet server loses nothing to a crash; a busy one batches.
 */
static void schedule_flush(void)
{
    static const struct timeval soon = {0, FLUSH_MS * 1000};
    if (lg.waiting) /* a pipe full: on_writable flushes */
        return;
    if (waiting() >= FLUSH_BYTES || coarse_now() - lg.last_write >= FLUSH_MS / 1000.0) {
        event_active(lg.flush, EV_TIMEOUT, 1);
    } else if (!event_pending(lg.flush, EV_TIMEOUT, NULL)) {
        event_add(lg.flush, &soon);
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    lg.waiting = 0;
    flush();
}

/* ---- formatting ----------------------------------------------------------------- */

static size_t moved; /* bytes compaction copied, since start (tests/test_accesslog.c) */

/* The waiting lines moved to the buffer's front. */
static void compact(void)
{
    moved += waiting();
    memmove(out.p, out.p + out.head, waiting());
    out.len -= out.head;
    out.head = 0;
}

/*
 * Room for a line at the buffer's end: the waiting lines moved to the front
 * when as much was written as waits (so a move never copies more than was
 * written: a reader slowly draining a full buffer costs no megabyte copy per
 * drain), else the buffer grown, to twice BUFFER_MAX at most, which always
 * leaves room at one end or the other. 0, or -1: the line is dropped.
 */
static int make_room(void)
{
    if (out.cap - out.len >= LINE_ROOM)
        return 0;
    if (out.head > 0 && out.head >= waiting()) {
        compact();
        if (out.cap - out.len >= LINE_ROOM)
            return 0;
    }
    if (waiting() > BUFFER_MAX)
        return -1;
    if (out.cap < BUFFER_CAP) {
        size_t cap = out.cap ? 2 * out.cap : FIRST_CAP;
        char *p = realloc(out.p, cap < BUFFER_CAP ? cap : BUFFER_CAP);
        if (p) {
            out.p = p;
            out.cap = cap < BUFFER_CAP ? cap : BUFFER_CAP;
            if (out.cap - out.len >= LINE_ROOM)
                return 0;
        }
    }
    if (out.head > 0) /* out of memory, or (never with BUFFER_CAP) no room yet */
        compact();
    return out.cap - out.len >= LINE_ROOM ? 0 : -1;
}

static inline void put(const char *s, size_t n)
{
    if (out.len + n > out.cap) { /* never with the caps: a line is less than LINE_ROOM */
        out.failed = 1;
        return;
    }
    memcpy(out.p + out.len, s, n);
    out.len += n;
}

/* A number, without printf: a line costs a few of them. */
static void put_uint(unsigned long long v)
{
    char b[24];
    int i = sizeof b;
    do
        b[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put(b + i, sizeof b - (size_t)i);
}

/* A version number as received (evhttp keeps it in a signed char): "-56" stays "-56". */
static void put_int(int v)
{
    if (v < 0)
        put("-", 1);
    put_uint(v < 0 ? (unsigned long long)-(long long)v : (unsigned long long)v);
}

/* Microseconds as milliseconds with three decimals ("12.345"), whatever the locale's comma. */
static void put_ms(long long us)
{
    char frac[4] = {'.', (char)('0' + us % 1000 / 100), (char)('0' + us % 100 / 10),
                    (char)('0' + us % 10)};
    put_uint((unsigned long long)(us / 1000));
    put(frac, 4);
}

/*
 * A field's piece of n bytes, as long as the field (begun at start) stays
 * within cap - 3 bytes as logged; else "..." ends the field and 0 says stop.
 * A piece is a whole escape or a whole UTF-8 sequence, never cut.
 */
static int put_capped(size_t start, size_t cap, const char *piece, size_t n)
{
    if (out.len - start + n > cap - 3) {
        put("...", 3);
        return 0;
    }
    put(piece, n);
    return 1;
}

/*
 * Combined: as nginx escapes a logged value, a quote, a backslash, a control
 * byte or a byte past ASCII becomes \xHH, so a line is one line of ASCII and
 * its quoted fields end at the first bare quote. Empty or unknown: "-". At
 * most cap bytes as logged, "..." at the end when cut.
 */
/* The bytes a field may hold as they are: printable ASCII but the quote and the backslash. */
static unsigned char plain[256]; /* filled at open: a look-up is a third of the test's cost */

static void fill_plain(void)
{
    for (int c = 0x20; c < 0x7f; c++)
        plain[c] = c != '"' && c != '\\';
}

static inline int combined_plain(unsigned char c)
{
    return plain[c];
}

/* A run of n bytes that need no escape, as much as the field's cap allows; 0 once cut. */
static int put_run(size_t start, size_t cap, const char *run, size_t n)
{
    size_t used = out.len - start, room = cap - 3 > used ? cap - 3 - used : 0;
    if (n <= room) {
        put(run, n);
        return 1;
    }
    put(run, room);
    put("...", 3);
    return 0;
}

static void put_combined(const char *s, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s || !*s) {
        put("-", 1);
        return;
    }
    size_t start = out.len;
    while (*s) {
        const char *run = s;
        while (combined_plain((unsigned char)*s)) /* NUL is not plain */
            s++;
        if (s > run && !put_run(start, cap, run, (size_t)(s - run)))
            return;
        if (!*s)
            return;
        unsigned char c = (unsigned char)*s++;
        char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        if (!put_capped(start, cap, esc, 4))
            return;
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

/*
 * A JSON string (RFC 8259): NULL is null; a byte that is not valid UTF-8
 * becomes U+FFFD. At most cap bytes between the quotes, cut at a UTF-8
 * boundary (never inside an escape) and ended with "..." when cut.
 */
static void put_json(const char *str, size_t cap)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!s) {
        put("null", 4);
        return;
    }
    put("\"", 1);
    size_t start = out.len;
    while (*s) {
        const unsigned char *run = s;
        while (combined_plain(*s))
            s++;
        if (s > run && !put_run(start, cap, (const char *)run, (size_t)(s - run)))
            break;
        if (!*s)
            break;
        char esc[8];
        const char *piece = esc;
        size_t n = 1;
        int u;
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\', esc[1] = (char)*s, n = 2;
        } else if (*s < 0x20 || *s == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", *s);
            n = 6;
        } else if (*s < 0x80) {
            piece = (const char *)s;
        } else if ((u = utf8_len(s)) > 0) {
            piece = (const char *)s, n = (size_t)u;
        } else {
            piece = "\\ufffd", n = 6;
        }
        if (!put_capped(start, cap, piece, n))
            break;
        s += piece == (const char *)s ? n : 1;
    }
    put("\"", 1);
}

static const char *const END_NAMES[] = {
    "ok",       "ok",          "client_gone", "handler_end", "error",        "drain",
    "shutdown", "slow_client", "timeout",     "refused",     "disconnected",
};

/* Microseconds since t0: formatted from integers ("%lld.%03lld"), whatever the locale's comma. */
static long long elapsed_us(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long us =
        (long long)(now.tv_sec - t0->tv_sec) * 1000000 + (now.tv_nsec - t0->tv_nsec) / 1000;
    return us < 0 ? 0 : us;
}

/* [10/Oct/2000:13:55:36 +0000], in UTC, in the C locale's month names whatever the locale. */
static void put_clf_time(const struct timeval *tv)
{
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static time_t cached = -1; /* the text changes once a second: made once a second */
    static char text[40];
    static int len;
    if (tv->tv_sec != cached) {
        struct tm tm;
        time_t t = tv->tv_sec;
        gmtime_r(&t, &tm);
        len = snprintf(text, sizeof text, "[%02d/%s/%04d:%02d:%02d:%02d +0000]", tm.tm_mday,
                       months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = t;
    }
    put(text, (size_t)len);
}

/* "2026-12-01T10:00:00.123Z", the part before the milliseconds made once a second. */
static void put_iso_time(const struct timeval *tv)
{
    static time_t cached = -1;
    static char text[40];
    static int len;
    if (tv->tv_sec != cached) {
        struct tm tm;
        time_t t = tv->tv_sec;
        gmtime_r(&t, &tm);
        len = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = t;
    }
    int ms = (int)(tv->tv_usec / 1000);
    char frac[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                    'Z'};
    put(text, (size_t)len);
    put(frac, 5);
}

/* "1.1", as received */
static void put_version(const struct rill_access *a)
{
    if (a->major >= 0 && a->major <= 9 && a->minor >= 0 && a->minor <= 9) {
        put((char[3]){(char)('0' + a->major), '.', (char)('0' + a->minor)}, 3);
        return;
    }
    put_int(a->major);
    put(".", 1);
    put_int(a->minor);
}

/*
 * A request id is made of characters safe in both formats (request.c's
 * copy_id and hex) and at most 64 of them: it is logged as it is.
 */
static void put_id(const char *id)
{
    if (!id || !*id)
        put("-", 1);
    else
        put(id, strnlen(id, 64));
}

/* remote - - [time] "METHOD target HTTP/x.y" status bytes "referer" "ua" ms id end */
static void format_combined(const struct rill_access *a, const struct rill_outcome *o,
                            const char *id, const char *end, long long us)
{
    put_combined(a->client, RILL_ACCESS_ADDR_MAX);
    put(" - - ", 5);
    put_clf_time(&a->start);
    put(" \"", 2);
    if (a->method && a->target) {
        put_combined(a->method, 32);
        put(" ", 1);
        put_combined(a->target, TARGET_MAX);
        put(" HTTP/", 6);
        put_version(a);
    } else {
        put("-", 1);
    }
    put("\" ", 2);
    put_uint(o->status);
    put(" ", 1);
    put_uint(o->sent);
    put(" \"", 2);
    put_combined(a->referer, HEADER_MAX);
    put("\" \"", 3);
    put_combined(a->ua, HEADER_MAX);
    put("\" ", 2);
    put_ms(us);
    put(" ", 1);
    put_id(id);
    put(" ", 1);
    put(end, strlen(end));
    put(" ", 1);
    if (o->fetched)
        put_ms(o->upstream_us);
    else
        put("-", 1);
    put("\n", 1);
}

static void format_json(const struct rill_access *a, const struct rill_outcome *o, const char *id,
                        const char *end, long long us)
{
    put("{\"time\":\"", 9);
    put_iso_time(&a->start);
    put("\",\"remote_addr\":", 16);
    put_json(a->client, RILL_ACCESS_ADDR_MAX);
    put(",\"peer_addr\":", 13);
    put_json(a->peer, RILL_ACCESS_ADDR_MAX);
    put(",\"method\":", 10);
    put_json(a->method, 32);
    put(",\"target\":", 10);
    put_json(a->target, TARGET_MAX);
    if (a->method) {
        put(",\"http_version\":\"", 17);
        put_version(a);
        put("\"", 1);
    } else {
        put(",\"http_version\":null", 20);
    }
    put(",\"status\":", 10);
    put_uint(o->status);
    put(",\"bytes_sent\":", 14);
    put_uint(o->sent);
    put(",\"duration_ms\":", 15);
    put_ms(us);
    put(",\"upstream_ms\":", 15);
    if (o->fetched)
        put_ms(o->upstream_us);
    else
        put("null", 4);
    put(",\"request_id\":", 14);
    if (id) {
        put("\"", 1);
        put_id(id);
        put("\"", 1);
    } else {
        put("null", 4);
    }
    put(",\"user_agent\":", 14);
    put_json(a->ua, HEADER_MAX);
    put(",\"referer\":", 11);
    put_json(a->referer, HEADER_MAX);
    put(",\"end\":\"", 8);
    put(end, strlen(end));
    put("\"}\n", 3);
}

/* ---- records ------------------------------------------------------------------- */

/*
 * The bytes of s a record keeps: one past the cap is enough for the
 * formatter to see it was cut (a logged byte is at least a byte of s).
 */
static size_t kept(const char *s, size_t cap)
{
    return s ? strnlen(s, cap + 1) : 0;
}

/* s's first n bytes at *at, ended; NULL stays NULL. */
static const char *copy_into(char **at, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *dst = *at;
    memcpy(dst, s, n);
    dst[n] = '\0';
    *at += n + 1;
    return dst;
}

struct rill_access *rill_access_new(const char *method, const char *target, int major, int minor,
                                    const char *peer, const char *client, const char *ua,
                                    const char *referer)
{
    if (lg.fd < 0)
        return NULL;
    size_t nt = kept(target, TARGET_MAX), np = kept(peer, RILL_ACCESS_ADDR_MAX),
           nc = kept(client, RILL_ACCESS_ADDR_MAX), nu = kept(ua, HEADER_MAX),
           nr = kept(referer, HEADER_MAX);
    struct rill_access *a = malloc(sizeof *a + nt + np + nc + nu + nr + 5);
    if (!a)
        return NULL;
    char *at = (char *)(a + 1);
    gettimeofday(&a->start, NULL);
    a->method = method;
    a->target = copy_into(&at, target, nt);
    a->peer = copy_into(&at, peer, np);
    a->client = client ? copy_into(&at, client, nc) : a->peer;
    a->ua = copy_into(&at, ua, nu);
    a->referer = copy_into(&at, referer, nr);
    a->major = major;
    a->minor = minor;
    return a;
}

void rill_outcome_start(struct rill_outcome *o, int cmd)
{
    memset(o, 0, sizeof *o);
    clock_gettime(CLOCK_MONOTONIC, &o->t0);
    o->cmd = (unsigned short)cmd;
    o->head = cmd == EVHTTP_REQ_HEAD;
}

/* Formats the line at the buffer's end; one that cannot go out whole is taken back, counted. */
static void write_line(const struct rill_access *a, const struct rill_outcome *o, const char *id,
                       const char *end, long long us)
{
    if (make_room() != 0) {
        lg.dropped++;
        return;
    }
    out.line = out.len;
    out.failed = 0;
    if (lg.torn)
        put("\n", 1); /* ends the half line a failed write left */
    if (lg.json)
        format_json(a, o, id, end, us);
    else
        format_combined(a, o, id, end, us);
    size_t n = out.len - out.line;
    /* the caps keep a line within PIPE_BUF; one past it would tear in a shared pipe */
    if (out.failed || (!lg.regular && n > PIPE_BUF) || out.len - out.head > BUFFER_MAX) {
        out.len = out.line;
        lg.dropped++;
        return;
    }
    lg.torn = 0;
    schedule_flush();
}

void rill_access_done(struct rill_access *a, struct rill_outcome *o, const char *id)
{
    enum rill_end end = (enum rill_end)o->end;
    if (end == RILL_END_NONE)
        end = o->streamed ? RILL_END_HANDLER_END : RILL_END_OK;
    if (o->status == 0)
        o->status = 499; /* nothing was sent: the client left first (nginx's code) */
    long long us = elapsed_us(&o->t0);
    rill_metrics_request(o->cmd, o->status, o->sent, us, (int)end, o->streamed);
    if (!a)
        return;
    if (lg.fd >= 0)
        write_line(a, o, id, END_NAMES[end], us);
    free(a);
}

/* ---- the log ------------------------------------------------------------------- */

int rill_accesslog_open(struct event_base *base, const char *path, int json, char *err,
                        size_t errlen)
{
    if (!path || strcmp(path, "off") == 0)
        return 0;
    int stdout_log = strcmp(path, "-") == 0, sock;
    int fd = open_fd(stdout_log ? NULL : path, &sock);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the access log %s: %s", path, strerror(errno));
        return -1;
    }
    lg.base = base;
    lg.json = json;
    lg.path = stdout_log ? NULL : strdup(path);
    fill_plain();
    lg.flush = event_new(base, -1, 0, on_flush, NULL);
    use_fd(fd, sock);
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
    int sock;
    int fd = open_fd(lg.path, &sock);
    if (fd < 0) {
        rill_log("access log: cannot reopen %s: %s (still writing to the old file)", lg.path,
                 strerror(errno));
        return;
    }
    flush(); /* what was buffered goes to the old file, as far as it can */
    use_fd(fd, sock);
    lg.failed = 0;
    flush();
}

void rill_accesslog_check_moved(void)
{
    struct stat named, open;
    if (lg.fd < 0 || !lg.path)
        return;
    if (stat(lg.path, &named) != 0 || fstat(lg.fd, &open) != 0 || named.st_dev != open.st_dev ||
        named.st_ino != open.st_ino)
        rill_accesslog_reopen();
}

unsigned long rill_accesslog_dropped(void)
{
    return lg.dropped;
}

size_t rill_accesslog_moved(void)
{
    return moved;
}

void rill_accesslog_close(void)
{
    if (lg.fd < 0)
        return;
    /* a full pipe or socket: up to CLOSE_DRAIN_MS more; a line begun is finished if it can be */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        lg.waiting = 0;
        flush();
        long long left = CLOSE_DRAIN_MS - elapsed_us(&t0) / 1000;
        if (waiting() == 0 || lg.regular || left <= 0)
            break;
        struct pollfd pfd = {.fd = lg.fd, .events = POLLOUT};
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            break;
    }
    unsigned long lost = count_lines();
    if (lost)
        rill_log("access log: %lu line%s lost at exit (the reader did not keep up)", lost,
                 lost == 1 ? "" : "s");
    lg.dropped += lost;
    if (lg.writable)
        event_free(lg.writable);
    lg.writable = NULL;
    event_free(lg.flush);
    close(lg.fd);
    free(lg.path);
    free(out.p);
    out.p = NULL;
    out.head = out.len = out.cap = 0;
    lg.fd = -1;
}
