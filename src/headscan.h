/* SPDX-License-Identifier: MIT */
#ifndef RILL_HEADSCAN_H
#define RILL_HEADSCAN_H
#include <stddef.h>
#include <stdint.h>

/*
 * A look at a request's framing as raw bytes, before evhttp parses it.
 * evhttp cleans up what it reads (a NUL cuts a value short, an obs-fold line
 * is merged into the one before, notes/evhttp.md Q5) and is lax with chunked
 * bodies (a sign, "0x", a space or a missing CRLF after the data all pass),
 * so these checks cannot be made afterwards: the size of the head, control
 * bytes and bare CRs, header names that are not tokens (a space before the
 * colon), folded lines, and the strict chunked syntax of RFC 9112 §7.1. The
 * meaning of the fields (Content-Length, Host, the target) is httpcheck.c's.
 * Bytes arrive in pieces split anywhere.
 */

enum rill_scan_result {
    RILL_SCAN_MORE, /* every byte given belongs to what is scanned; it goes on */
    RILL_SCAN_DONE, /* it ended (the head's blank line, the body's last chunk and trailers) */
    RILL_SCAN_BAD,  /* refused: status and why are set */
};

struct rill_headscan {
    size_t max;  /* bytes the request line and the headers may take, line ends included */
    size_t seen; /* bytes of this head so far */
    size_t line; /* bytes of the current line before the byte being read */
    int state;
    int chunked;     /* the first Transfer-Encoding is "chunked": a chunked body follows */
    int status;      /* on RILL_SCAN_BAD: 400, 414 or 431 */
    const char *why; /* on RILL_SCAN_BAD: a short reason for the client */
    /* the name of the field being read, and the first Transfer-Encoding's value */
    char name[20], te[12];
    size_t name_len, te_len;
    size_t te_blanks; /* spaces and tabs after the TE value's last other byte */
    int in_te, te_seen;
    int line_blank;  /* the request line's last byte was a space */
    int line_spaces; /* spaces in the request line: exactly two */
    char version[9]; /* the request line's last bytes: " HTTP/1.1" */
    size_t version_len;
    char target[2]; /* the first bytes of the request target */
    size_t target_len;
};

/*
 * The longest request line (method, target, version): past it, 414. nginx's
 * default buffer for one header line is 8 KiB too; rill's decoded-path buffer
 * (RILL_PATH_MAX) is that size, so a target that fits the line fits the path.
 */
#define RILL_REQUEST_LINE_MAX 8192

void rill_headscan_init(struct rill_headscan *h, size_t max);

/*
 * Reads up to n bytes of p. On RILL_SCAN_DONE, *used is the length of the
 * head's last piece in p (what follows is the body or the next request). On
 * RILL_SCAN_BAD, *used is the offset of the refused byte. After DONE or BAD,
 * init again for the next head.
 */
enum rill_scan_result rill_headscan_feed(struct rill_headscan *h, const char *p, size_t n,
                                         size_t *used);

/* A chunked body, from its first chunk-size line to the end of its trailers. */
struct rill_chunkscan {
    int state;
    uint64_t left; /* data bytes of the current chunk still to come */
    int digits;    /* of the chunk-size line */
    size_t line;   /* bytes of the current line before the byte being read */
    struct rill_headscan trailers;
    const char *why; /* on RILL_SCAN_BAD (the status is always 400) */
    /* when set, given each piece of chunk data as it is scanned (a body the gate reads itself) */
    void (*on_data)(void *arg, const char *p, size_t n);
    void *data_arg;
};

void rill_chunkscan_init(struct rill_chunkscan *c, size_t max_trailer_bytes);
/* As rill_headscan_feed. On BAD, c->line bytes before the refused one belong to its line. */
enum rill_scan_result rill_chunkscan_feed(struct rill_chunkscan *c, const char *p, size_t n,
                                          size_t *used);

/* RFC 9110 tchar: what a method or a header name is made of. */
int rill_is_tchar(unsigned char c);
/* 1 when the n bytes of s are a token (a method, a header name): not empty, all tchar. */
int rill_is_token(const char *s, size_t n);
/*
 * The first byte of a field value that may not be sent (CR, LF, NUL or any
 * other control byte but HTAB: a CRLF would end the field and start
 * another), or -1 when there is none. For the values rill writes.
 */
long rill_value_bad_byte(const char *v, size_t len);

#endif
