/* SPDX-License-Identifier: MIT */
/*
 * --trust-proxy: the ranges of proxies whose X-Forwarded-For and Forwarded
 * headers are believed, and the walk that finds a request's client address in
 * them. Owns the range list (set by main before the workers start, read only
 * after). Never trusts anything by default, and never returns a string it did
 * not parse as an address: what a client wrote is not echoed as remote_addr.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RANGES 64

struct addr {
    int family; /* AF_INET or AF_INET6; an IPv4-mapped IPv6 address is AF_INET */
    unsigned char b[16];
};

struct range {
    struct addr a;
    int bits;
};

static struct range ranges[MAX_RANGES];
static int nranges;

/* One address with no port ("10.0.0.1", "::1"), mapped IPv6 folded to IPv4. */
static int parse_bare(const char *s, struct addr *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, a->b) == 1) {
        a->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, a->b) != 1)
        return -1;
    a->family = AF_INET6;
    if (memcmp(a->b, mapped, 12) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = AF_INET;
    }
    return 0;
}

static int is_port(const char *s)
{
    size_t n = strspn(s, "0123456789");
    return n >= 1 && n <= 5 && s[n] == '\0';
}

/* A node: "1.2.3.4", "1.2.3.4:80", "::1", "[::1]", "[::1]:80"; -1 for anything else. */
static int parse_node(const char *s, size_t n, struct addr *a)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || (close[1] && (close[1] != ':' || !is_port(close + 2))))
            return -1;
        *close = '\0';
        return strchr(buf + 1, '.') && !strchr(buf + 1, ':') ? -1 : parse_bare(buf + 1, a);
    }
    if (parse_bare(buf, a) == 0)
        return 0;
    char *colon = strchr(buf, ':');
    if (!colon || strchr(colon + 1, ':') || !is_port(colon + 1))
        return -1;
    *colon = '\0';
    return inet_pton(AF_INET, buf, a->b) == 1 ? (a->family = AF_INET, 0) : -1;
}

int rill_proxy_trust(const char *cidr)
{
    char buf[64];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
    struct range r;
    if (nranges == MAX_RANGES || n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, cidr, n);
    buf[n] = '\0';
    if (parse_bare(buf, &r.a) != 0 || (r.a.family == AF_INET && strchr(buf, ':')))
        return -1; /* "::ffff:10.0.0.0/104" would be cut in the wrong place: refused */
    int max = r.a.family == AF_INET ? 32 : 128;
    r.bits = max;
    if (slash) {
        size_t d = strspn(slash + 1, "0123456789");
        if (d == 0 || d > 3 || slash[1 + d] != '\0' || (r.bits = atoi(slash + 1)) > max)
            return -1;
    }
    for (int i = r.bits; i < 128; i++) /* the host bits are cleared: 10.1.2.3/8 is 10.0.0.0/8 */
        r.a.b[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    ranges[nranges++] = r;
    return 0;
}

int rill_proxy_any(void)
{
    return nranges > 0;
}

void rill_proxy_reset(void)
{
    nranges = 0;
}

static int trusted(const struct addr *a)
{
    for (int i = 0; i < nranges; i++) {
        const struct range *r = &ranges[i];
        if (r->a.family != a->family)
            continue;
        int whole = r->bits / 8, rest = r->bits % 8;
        if (memcmp(r->a.b, a->b, (size_t)whole) != 0)
            continue;
        if (!rest || ((r->a.b[whole] ^ a->b[whole]) & (0xff00u >> rest) & 0xff) == 0)
            return 1;
    }
    return 0;
}

/* s[0..n) without the optional whitespace around it. */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* The for= node of one Forwarded element ("for=1.2.3.4;proto=http", `for="[::1]:80"`). */
static int forwarded_for(const char *s, size_t n, struct addr *a)
{
    while (n) {
        const char *semi = memchr(s, ';', n);
        size_t pl = semi ? (size_t)(semi - s) : n;
        const char *p = s;
        size_t l = pl;
        trim(&p, &l);
        if (l > 4 && strncasecmp(p, "for=", 4) == 0) {
            p += 4, l -= 4;
            if (l && *p == '"') {
                if (l < 2 || p[l - 1] != '"' || memchr(p + 1, '\\', l - 2))
                    return -1;
                p++, l -= 2;
            }
            return parse_node(p, l, a);
        }
        s += pl + (semi != NULL), n -= pl + (semi != NULL);
    }
    return -1; /* no for=: the hop is unknown, so is everything left of it */
}

/*
 * Walks the hops of lines (in arrival order) from the last one leftwards,
 * skipping trusted ones. 1: the client is in *a; 0: the walk met a malformed
 * entry or there is none (the peer stands).
 */
static int walk(const char *const *lines, int nlines, int forwarded, struct addr *a)
{
    int found = 0;
    for (int i = nlines - 1; i >= 0; i--) {
        const char *s = lines[i], *end = s + strlen(s);
        for (;;) {
            const char *p = end;
            while (p > s && p[-1] != ',')
                p--;
            const char *e = p;
            size_t n = (size_t)(end - p);
            trim(&e, &n);
            struct addr hop;
            if ((forwarded ? forwarded_for(e, n, &hop) : parse_node(e, n, &hop)) != 0)
                return 0;
            *a = hop, found = 1;
            if (!trusted(&hop))
                return 1;
            if (p == s)
                break;
            end = p - 1;
        }
    }
    return found; /* every hop trusted: the leftmost */
}

const char *rill_proxy_client(const char *peer, const char *const *xff, int nxff,
                              const char *const *fwd, int nfwd, char *out, size_t cap)
{
    struct addr a;
    snprintf(out, cap, "%s", peer);
    if (!nranges || parse_node(peer, strlen(peer), &a) != 0 || !trusted(&a))
        return out;
    if (nxff ? walk(xff, nxff, 0, &a) : walk(fwd, nfwd, 1, &a))
        inet_ntop(a.family, a.b, out, (socklen_t)cap);
    return out;
}
