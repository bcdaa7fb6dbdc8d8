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

/* The q of the coding named at p (after its name), 1 when none is given. */
static double q_of(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != ';')
        return 1;
    for (p++; *p == ' ' || *p == '\t'; p++)
        ;
    if ((p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
        return 1; /* another parameter: q stays 1 */
    return strtod(p + 2, NULL);
}

int rill_gz_accepted(struct evhttp_request *req)
{
    const char *ae = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept-Encoding");
    if (!ae)
        return 0;
    for (const char *p = ae; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, " \t;,");
        if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
            (n == 6 && strncasecmp(p, "x-gzip", 6) == 0))
            return q_of(p + n) > 0;
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

void rill_gz_shutdown(void)
{
    if (whole_ready)
        deflateEnd(&whole_z);
    whole_ready = 0;
}
