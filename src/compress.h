/* SPDX-License-Identifier: MIT */
#ifndef RILL_COMPRESS_H
#define RILL_COMPRESS_H
#include <event2/buffer.h>
#include <event2/http.h>
#include <stddef.h>

/*
 * gzip for responses (Content-Encoding): a whole body at once, or a stream
 * chunk by chunk, each chunk flushed (Z_SYNC_FLUSH) so the client can
 * decompress every event as soon as it arrives.
 */

/* Bodies shorter than this go out as they are: gzip's header and trailer would outweigh them. */
#define RILL_GZ_MIN_LENGTH 256

/* Whether the request's Accept-Encoding takes gzip (q > 0). */
int rill_gz_accepted(struct evhttp_request *req);
/* The same for an Accept-Encoding value (NULL: none). */
int rill_gz_accepts(const char *accept_encoding);
/* Whether a body of this Content-Type (NULL: none) is worth compressing: text, JSON, XML, SSE... */
int rill_gz_compressible(const char *type);

/* body as one gzip member, appended to out; -1: out of memory (out unchanged). */
int rill_gz_whole(const char *body, size_t len, struct evbuffer *out);

/* A stream's compressor; NULL: out of memory. */
struct rill_gz *rill_gz_stream_new(void);
/*
 * Compresses what in holds (drained) into out, flushed so that it can all be
 * decompressed now; with last, the gzip trailer too. -1: out of memory.
 */
int rill_gz_stream(struct rill_gz *z, struct evbuffer *in, struct evbuffer *out, int last);
void rill_gz_stream_free(struct rill_gz *z);

/*
 * Shared compression for hub fan-out: a topic's events compressed once for
 * all its gzip'd subscribers, not once per subscriber (compress.c says how).
 * Each subscriber keeps only its gzip CRC and length (struct rill_gzs).
 */
struct rill_gz_topic;
struct rill_gz_topic *rill_gz_topic_new(void);
void rill_gz_topic_free(struct rill_gz_topic *t);
/* The topic's compressed subscribers, counted: with none, events are not compressed. */
void rill_gz_topic_join(struct rill_gz_topic *t);
int rill_gz_topic_leave(struct rill_gz_topic *t); /* how many are left */
int rill_gz_topic_users(const struct rill_gz_topic *t);
/* An event went by uncompressed (none listened): the next one starts a new window. */
void rill_gz_topic_break(struct rill_gz_topic *t);
/*
 * Compresses one event in the topic's context: *out (valid until the next
 * call) and its length; *window is its window's number and *start says it
 * opens one (it needs nothing before it). -1: out of memory.
 */
int rill_gz_topic_event(struct rill_gz_topic *t, const void *bytes, size_t len,
                        const unsigned char **out, size_t *outlen, unsigned *window, int *start);
/* bytes compressed alone (decompressible after any other segment); *out valid until the next call.
 */
int rill_gz_alone(const void *bytes, size_t len, const unsigned char **out, size_t *outlen);

/* A shared-mode subscriber's own part of its gzip stream. */
struct rill_gzs {
    unsigned long crc;   /* of what it was sent, uncompressed */
    unsigned long isize; /* how much that was, mod 2^32 */
    unsigned long long next_seq;
    unsigned window;
    int cohort; /* following its topic's window: its next event may be the shared bytes */
};
/* A gzip member's header (10 bytes), to out; s starts counting. */
void rill_gzs_start(struct rill_gzs *s, struct evbuffer *out);
/*
 * bytes, which only s is sent (its retry line, a gap notice), compressed
 * alone onto out; s leaves its window, since what follows them is not the
 * window's. -1: out of memory (out unchanged).
 */
int rill_gzs_alone(struct rill_gzs *s, const void *bytes, size_t len, struct evbuffer *out);
/* s was sent len more bytes whose CRC-32 is crc. */
void rill_gzs_count(struct rill_gzs *s, unsigned long crc, size_t len);
/* The gzip trailer (a last empty block, the CRC and the length), to out. */
void rill_gzs_end(const struct rill_gzs *s, struct evbuffer *out);
/* A sync marker: bytes on the wire that decompress to nothing (a compressed stream's heartbeat). */
void rill_gz_nothing(struct evbuffer *out);
unsigned long rill_gz_crc(const void *bytes, size_t len);

/* At exit: the worker's compressors for whole bodies and alone segments. */
void rill_gz_shutdown(void);

#endif
