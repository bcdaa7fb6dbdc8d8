/* SPDX-License-Identifier: MIT */
#ifndef RILL_HEADSCAN_H
#define RILL_HEADSCAN_H
#include <stddef.h>

/*
 * A look at a request head as raw bytes, before evhttp parses it. evhttp
 * cleans up what it reads (a NUL cuts a value short, an obs-fold line is
 * merged into the one before, notes/evhttp.md Q5), so these checks cannot be
 * made afterwards: the size of the head, control bytes and bare CRs, header
 * names that are not tokens (a space before the colon), folded lines. The
 * meaning of the fields (framing, Host, the target) is httpcheck.c's job.
 * Bytes arrive in pieces split anywhere.
 */

enum rill_headscan_result {
    RILL_HEAD_MORE, /* every byte given is part of the head; it goes on */
    RILL_HEAD_DONE, /* the head ended (at its blank line) */
    RILL_HEAD_BAD,  /* refused: status and why are set */
};

struct rill_headscan {
    size_t max;  /* bytes the request line and the headers may take, line ends included */
    size_t seen; /* bytes of this head so far */
    int state;
    int status;      /* on RILL_HEAD_BAD: 400, 414 or 431 */
    const char *why; /* on RILL_HEAD_BAD: a short reason for the client */
};

void rill_headscan_init(struct rill_headscan *h, size_t max);

/*
 * Reads up to n bytes of p. On RILL_HEAD_DONE, *used is the length of the
 * head's last piece in p (what follows is the body or the next request);
 * otherwise every byte was read. After DONE or BAD, init again for the next head.
 */
enum rill_headscan_result rill_headscan_feed(struct rill_headscan *h, const char *p, size_t n,
                                             size_t *used);

/* RFC 9110 tchar: what a method or a header name is made of. */
int rill_is_tchar(unsigned char c);

#endif
