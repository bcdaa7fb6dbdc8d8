/* SPDX-License-Identifier: MIT */
#ifndef RILL_PROXY_H
#define RILL_PROXY_H
#include <stddef.h>

/* The most X-Forwarded-For (or Forwarded) header lines one request may bring. */
#define RILL_PROXY_MAX_LINES 32
/* Room for any address rill_proxy_client writes (INET6_ADDRSTRLEN). */
#define RILL_PROXY_ADDR_CAP 46

/* Trusts a proxy range ("10.0.0.0/8", "::1", "2001:db8::/32"); 0, or -1 when not a CIDR. */
int rill_proxy_trust(const char *cidr);
/* Whether any range is trusted (none by default). */
int rill_proxy_any(void);
/* Forgets every range (the unit tests). */
void rill_proxy_reset(void);

/*
 * The client address of a request from peer, into out (cap >= RILL_PROXY_ADDR_CAP):
 * when peer is trusted, the rightmost untrusted hop of the X-Forwarded-For
 * lines (xff, in arrival order), else of the Forwarded lines; the peer itself
 * when it is not trusted, when there is no such header, or when the walk meets
 * a malformed entry. Returns out.
 */
const char *rill_proxy_client(const char *peer, const char *const *xff, int nxff,
                              const char *const *fwd, int nfwd, char *out, size_t cap);

#endif
