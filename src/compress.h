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

/* At exit: the worker's compressor for whole bodies. */
void rill_gz_shutdown(void);

#endif
