/* SPDX-License-Identifier: MIT */
/*
 * gzip for responses. A whole body is compressed in one call by a single
 * compressor per process (one worker runs at a time: a 15-bit window, reset
 * for each body). A stream has its own, smaller one, kept while it lives,
 * so each event compresses against the ones before it (an SSE stream's
 * field names and JSON keys repeat): every chunk is flushed with
 * Z_SYNC_FLUSH, so nothing waits in the compressor for more input.
 *
 * What compress.c must never do: let memory per stream grow with what it
 * sends. A stream's compressor is fixed at its start by windowBits 12 and
 * memLevel 4 (zlib: 2^14 + 2^13 bytes, plus its state: about 30 KiB), so
 * 5,000 compressed streams hold about 150 MiB, whatever they carry.
 */
#include "compress.h"

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define LEVEL        5  /* zlib's 1-9: 5 is within a few % of 9 on text, at half its time */
#define STREAM_WBITS 12 /* a 4 KiB window: tens of events back */
#define STREAM_MEM   4
#define GZIP_WRAPPER 16 /* windowBits + 16: a gzip header and trailer, not zlib's */

struct rill_gz {
    z_stream z;
};

static z_stream whole_z;
static int whole_ready;

/* A qvalue (RFC 9110 12.4.2: 0, 1, 0.xyz), by hand: strtod would follow the locale. */
static double parse_q(const char *p)
{
    double q = 0, unit = 1;
    if (*p < '0' || *p > '9')
        return 0;
    q = *p++ - '0';
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9' && unit > 0.001; p++) /* three decimals at most */
            q += (*p - '0') * (unit /= 10);
    return q;
}

/* The q among the parameters at p (after a coding's name, up to its comma), 1 when none is given.
 */
static double q_of(const char *p)
{
    while (*p && *p != ',') {
        if (*p++ != ';')
            continue;
        while (*p == ' ' || *p == '\t')
            p++;
        if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return parse_q(p + 2);
    }
    return 1;
}

int rill_gz_accepted(struct evhttp_request *req)
{
    return rill_gz_accepts(
        evhttp_find_header(evhttp_request_get_input_headers(req), "Accept-Encoding"));
}

int rill_gz_accepts(const char *ae)
{
    if (!ae)
        return 0;
    for (const char *p = ae; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, " \t;,");
        int gzip = (n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
                   (n == 6 && strncasecmp(p, "x-gzip", 6) == 0);
        if (gzip && q_of(p + n) > 0)
            return 1; /* either name, with a q above 0 */
        p += n;
        p += strcspn(p, ","); /* its parameters */
    }
    return 0;
}

int rill_gz_compressible(const char *type)
{
    static const char *const types[] = {
        "text/",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/x-ndjson",
        "image/svg+xml",
        "application/manifest+json",
        NULL,
    };
    if (!type)
        return 0;
    for (int i = 0; types[i]; i++)
        if (strncasecmp(type, types[i], strlen(types[i])) == 0)
            return 1;
    const char *plus = strchr(type, '+'); /* application/ld+json, application/atom+xml */
    return plus && (strncasecmp(plus, "+json", 5) == 0 || strncasecmp(plus, "+xml", 4) == 0);
}

/* Runs z over its input into out with flush until it has no more to give. */
static int drain_into(z_stream *z, struct evbuffer *out, int flush)
{
    for (;;) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(out, 4096, &v, 1) < 1)
            return -1;
        z->next_out = v.iov_base;
        z->avail_out = (uInt)v.iov_len;
        int rc = deflate(z, flush);
        v.iov_len -= z->avail_out;
        evbuffer_commit_space(out, &v, 1);
        if (rc == Z_STREAM_END || (rc == Z_OK && z->avail_out > 0 && z->avail_in == 0))
            return 0;
        if (rc == Z_BUF_ERROR && z->avail_out > 0)
            return 0; /* nothing was left to flush */
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
    }
}

int rill_gz_whole(const char *body, size_t len, struct evbuffer *out)
{
    if (!whole_ready) {
        if (deflateInit2(&whole_z, LEVEL, Z_DEFLATED, 15 + GZIP_WRAPPER, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK)
            return -1;
        whole_ready = 1;
    }
    struct evbuffer *tmp = evbuffer_new();
    if (!tmp)
        return -1;
    deflateReset(&whole_z);
    whole_z.next_in = (Bytef *)body;
    whole_z.avail_in = (uInt)len; /* bodies are bounded far below 4 GiB (a Lua string in memory) */
    int rc = len > 0xffffffffu ? -1 : drain_into(&whole_z, tmp, Z_FINISH);
    if (rc == 0)
        evbuffer_add_buffer(out, tmp);
    evbuffer_free(tmp);
    return rc;
}

struct rill_gz *rill_gz_stream_new(void)
{
    struct rill_gz *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (deflateInit2(&g->z, LEVEL, Z_DEFLATED, STREAM_WBITS + GZIP_WRAPPER, STREAM_MEM,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(g);
        return NULL;
    }
    return g;
}

int rill_gz_stream(struct rill_gz *g, struct evbuffer *in, struct evbuffer *out, int last)
{
    int n = evbuffer_peek(in, -1, NULL, NULL, 0);
    struct evbuffer_iovec small[8], *v = n <= 8 ? small : malloc((size_t)n * sizeof *v);
    if (!v)
        return -1;
    evbuffer_peek(in, -1, NULL, v, n);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        g->z.next_in = v[i].iov_base;
        g->z.avail_in = (uInt)v[i].iov_len;
        rc = drain_into(&g->z, out, Z_NO_FLUSH);
    }
    if (rc == 0) {
        g->z.next_in = NULL;
        g->z.avail_in = 0;
        rc = drain_into(&g->z, out, last ? Z_FINISH : Z_SYNC_FLUSH);
    }
    if (v != small)
        free(v);
    evbuffer_drain(in, evbuffer_get_length(in));
    return rc;
}

void rill_gz_stream_free(struct rill_gz *g)
{
    if (!g)
        return;
    deflateEnd(&g->z);
    free(g);
}

/* ---- shared compression for hub fan-out ------------------------------------------ */

/*
 * A hub event goes to every subscriber of its topic as the same bytes, by
 * reference. Compressed per subscriber, each would cost a compressor (30
 * KiB) and a compression of every event. Compressed alone (each event a
 * self-contained deflate segment), they could be shared, but small SSE
 * events barely compress without the ones before them (0.88 of their size,
 * measured on JSON ticks; 0.23 with context).
 *
 * So a topic's events are compressed once, in order, by one compressor of
 * the topic's, in windows: every WINDOW_EVENTS events (or WINDOW_BYTES of
 * output) the compressor starts again from nothing, so a window's first
 * event needs nothing before it, and each later one needs only the earlier
 * ones of its window. A subscriber that has had every event of a window
 * since its start gets the shared bytes (raw deflate, ending byte-aligned
 * by Z_SYNC_FLUSH); one that joined mid-window, or missed an event (a gap,
 * a drop), gets each event compressed alone (shared too, made once per
 * event) until the next window starts. Its heartbeats are sync markers,
 * which decompress to nothing and so break no window; what it alone is sent
 * (its retry line, a gap notice, the shutdown's retry) goes as segments
 * compressed alone. All of it is one valid gzip member: segments of raw
 * deflate, concatenated, none final, with the subscriber's own header, CRC
 * (combined from each event's) and length.
 */
#define WINDOW_EVENTS 64
#define WINDOW_BYTES  (16 * 1024)
#define TOPIC_WBITS   STREAM_WBITS
#define TOPIC_MEM     STREAM_MEM

struct rill_gz_topic {
    z_stream z;
    int users;
    unsigned window; /* the current window's number */
    unsigned events; /* compressed in it */
    size_t bytes;    /* of output in it */
    int fresh;       /* the next event opens a new window */
};

static struct evbuffer *seg_out; /* the last compressed event or segment */
static z_stream alone_z;
static int alone_ready;

struct rill_gz_topic *rill_gz_topic_new(void)
{
    struct rill_gz_topic *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (deflateInit2(&t->z, LEVEL, Z_DEFLATED, -TOPIC_WBITS, TOPIC_MEM, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        free(t);
        return NULL;
    }
    t->fresh = 1;
    return t;
}

void rill_gz_topic_free(struct rill_gz_topic *t)
{
    if (!t)
        return;
    deflateEnd(&t->z);
    free(t);
}

void rill_gz_topic_join(struct rill_gz_topic *t)
{
    t->users++;
}

int rill_gz_topic_leave(struct rill_gz_topic *t)
{
    return --t->users;
}

int rill_gz_topic_users(const struct rill_gz_topic *t)
{
    return t->users;
}

void rill_gz_topic_break(struct rill_gz_topic *t)
{
    t->fresh = 1;
}

/* z over bytes, flushed, into seg_out (emptied first): *out and *outlen. */
static int compress_segment(z_stream *z, const void *bytes, size_t len, const unsigned char **out,
                            size_t *outlen)
{
    if (!seg_out && !(seg_out = evbuffer_new()))
        return -1;
    evbuffer_drain(seg_out, evbuffer_get_length(seg_out));
    if (len > 0xffffffffu)
        return -1;
    z->next_in = (Bytef *)bytes;
    z->avail_in = (uInt)len;
    if (drain_into(z, seg_out, Z_SYNC_FLUSH) != 0)
        return -1;
    *outlen = evbuffer_get_length(seg_out);
    *out = evbuffer_pullup(seg_out, -1);
    return *out || *outlen == 0 ? 0 : -1;
}

int rill_gz_topic_event(struct rill_gz_topic *t, const void *bytes, size_t len,
                        const unsigned char **out, size_t *outlen, unsigned *window, int *start)
{
    *start = t->fresh;
    if (t->fresh) {
        deflateReset(&t->z);
        t->window++;
        t->events = 0;
        t->bytes = 0;
        t->fresh = 0;
    }
    *window = t->window;
    if (compress_segment(&t->z, bytes, len, out, outlen) != 0) {
        t->fresh = 1; /* its state is unknown now: the next event starts over */
        return -1;
    }
    t->events++;
    t->bytes += *outlen;
    if (t->events >= WINDOW_EVENTS || t->bytes >= WINDOW_BYTES)
        t->fresh = 1;
    return 0;
}

int rill_gz_alone(const void *bytes, size_t len, const unsigned char **out, size_t *outlen)
{
    if (!alone_ready) {
        if (deflateInit2(&alone_z, LEVEL, Z_DEFLATED, -TOPIC_WBITS, TOPIC_MEM,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        alone_ready = 1;
    }
    deflateReset(&alone_z);
    return compress_segment(&alone_z, bytes, len, out, outlen);
}

void rill_gzs_start(struct rill_gzs *s, struct evbuffer *out)
{
    /* ID1 ID2, deflate, no flags, no time, no extra flags, OS unknown (RFC 1952) */
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
    memset(s, 0, sizeof *s);
    s->crc = crc32(0, Z_NULL, 0);
    evbuffer_add(out, header, sizeof header);
}

int rill_gzs_alone(struct rill_gzs *s, const void *bytes, size_t len, struct evbuffer *out)
{
    const unsigned char *z;
    size_t zlen;
    if (rill_gz_alone(bytes, len, &z, &zlen) != 0)
        return -1;
    unsigned long crc = rill_gz_crc(bytes, len); /* before the add: bytes may be in out */
    if (evbuffer_add(out, z, zlen) != 0)
        return -1;
    rill_gzs_count(s, crc, len);
    s->cohort = 0;
    return 0;
}

void rill_gzs_count(struct rill_gzs *s, unsigned long crc, size_t len)
{
    s->crc = crc32_combine(s->crc, crc, (z_off_t)len);
    s->isize = (s->isize + len) & 0xffffffffu;
}

void rill_gzs_end(const struct rill_gzs *s, struct evbuffer *out)
{
    /* a last block of the fixed code with only its end-of-block: 1 01 0000000 (RFC 1951) */
    unsigned char tail[10] = {0x03, 0x00};
    for (int i = 0; i < 4; i++) {
        tail[2 + i] = (unsigned char)(s->crc >> (8 * i));
        tail[6 + i] = (unsigned char)(s->isize >> (8 * i));
    }
    evbuffer_add(out, tail, sizeof tail);
}

void rill_gz_nothing(struct evbuffer *out)
{
    /* an empty stored block, not final, on a byte boundary: what Z_SYNC_FLUSH ends with */
    static const unsigned char marker[5] = {0x00, 0x00, 0x00, 0xff, 0xff};
    evbuffer_add(out, marker, sizeof marker);
}

unsigned long rill_gz_crc(const void *bytes, size_t len)
{
    return crc32(crc32(0, Z_NULL, 0), bytes, (uInt)len);
}

void rill_gz_shutdown(void)
{
    if (whole_ready)
        deflateEnd(&whole_z);
    whole_ready = 0;
    if (alone_ready)
        deflateEnd(&alone_z);
    alone_ready = 0;
    if (seg_out)
        evbuffer_free(seg_out);
    seg_out = NULL;
}
