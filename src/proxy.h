/* SPDX-License-Identifier: MIT */
#ifndef RILL_PROXY_H
#define RILL_PROXY_H
#include <stddef.h>

/* The header lines one request's walk reads: the last ones (a proxy appends its own). */
#define RILL_PROXY_MAX_LINES 32
/* Room for any address rill_proxy_client writes (INET6_ADDRSTRLEN). */
#define RILL_PROXY_ADDR_CAP 46

/* Trusts a proxy range ("10.0.0.0/8", "::1", "2001:db8::/32"); 0, or -1 when not a CIDR. */
int rill_proxy_trust(const char *cidr);
/* Whether any range is trusted (none by default). */
int rill_proxy_any(void);
/* Forgets every range and the header choice (the unit tests). */
void rill_proxy_reset(void);
/* --trust-proxy-header: "x-forwarded-for" (the default) or "forwarded"; 0, or -1. */
int rill_proxy_header(const char *name);
/* The one header the walk reads ("X-Forwarded-For" or "Forwarded"); the other is ignored. */
const char *rill_proxy_header_name(void);

/*
 * The client address of a request from peer, into out (cap >= RILL_PROXY_ADDR_CAP):
 * when peer is trusted, the rightmost untrusted hop of lines (the chosen
 * header's lines, in arrival order); the leftmost when every hop is trusted;
 * the peer itself when it is not trusted, when there is no hop, or when the
 * walk from the right meets a malformed entry. Returns out.
 */
const char *rill_proxy_client(const char *peer, const char *const *lines, int nlines, char *out,
                              size_t cap);

#endif
