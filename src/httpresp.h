/* SPDX-License-Identifier: MIT */
#ifndef RILL_HTTPRESP_H
#define RILL_HTTPRESP_H
#include <stddef.h>

/*
 * A push parser for HTTP/1.0 and 1.1 responses, for rill.fetch. Body bytes
 * are handed on as they arrive (a partial chunk too), never accumulated.
 */

#define RILL_RESP_LINE_MAX 8192        /* a status, header or chunk-size line */
#define RILL_RESP_HEAD_MAX (64 * 1024) /* all header lines of one response */

struct rill_resp_handler {
    /* one header of the final response; pointers valid during the call */
    void (*header)(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);
    void (*head)(void *arg, int status); /* the head is complete */
    void (*body)(void *arg, const char *data, size_t len);
    void (*done)(void *arg); /* the body is complete */
};

enum rill_resp_framing { RILL_RESP_NONE, RILL_RESP_LENGTH, RILL_RESP_CHUNKED, RILL_RESP_CLOSE };

struct rill_resp_parser {
    const struct rill_resp_handler *h;
    void *arg;
    int state;
    int status;
    int no_body; /* the request was HEAD */
    enum rill_resp_framing framing;
    long long remaining; /* bytes left in the body or the current chunk */
    int te_chunked, te_other, cl_seen, cl_conflict;
    int minor;      /* HTTP/1.minor of the response */
    int conn_close; /* the response said Connection: close */
    size_t extra;   /* bytes fed after the response ended */
    long long content_length;
    size_t head_bytes;
    size_t line_len;
    const char *error; /* set when feed returns -1 */
    char line[RILL_RESP_LINE_MAX];
};

void rill_resp_init(struct rill_resp_parser *p, const struct rill_resp_handler *h, void *arg,
                    int head_request);
/* Feeds bytes. Returns 0, or -1 with p->error set (the response is unusable). */
int rill_resp_feed(struct rill_resp_parser *p, const char *buf, size_t len);
/*
 * The connection closed. Ends a close-delimited body (done is called);
 * returns -1 with p->error "truncated ..." when the response was incomplete.
 */
int rill_resp_eof(struct rill_resp_parser *p);
/* 1 once done was called. */
int rill_resp_complete(const struct rill_resp_parser *p);
/*
 * 1 when the connection can carry another request: a complete HTTP/1.1
 * response, framed by length or chunks, no Connection: close, no stray bytes.
 */
int rill_resp_reusable(const struct rill_resp_parser *p);
/* The framing the head chose (valid after head). */
enum rill_resp_framing rill_resp_framing(const struct rill_resp_parser *p);

#endif
