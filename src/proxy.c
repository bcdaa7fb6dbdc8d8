/* SPDX-License-Identifier: MIT */
/*
 * --trust-proxy: the ranges of proxies whose X-Forwarded-For (or, with
 * --trust-proxy-header forwarded, Forwarded) header is believed, and the walk
 * that finds a request's client address in it. Owns the range list (set by main before the workers
 * start, read only after). Never trusts anything by default, and never returns a string it did not
 * parse as an address: what a client wrote is not echoed as remote_addr.
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
static int use_forwarded; /* --trust-proxy-header forwarded */

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
    use_forwarded = 0;
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

/*
 * The hops met so far, left to right. The walk from the rightmost hop
 * leftwards, skipping trusted ones, ends at the rightmost hop that is not a
 * trusted address, so that is all one pass keeps: the client when it is an
 * address, the peer when it is malformed, and the leftmost hop when every hop
 * is trusted.
 */
struct hops {
    int any, stop, stop_bad;
    struct addr first, last;
};

static void hop(struct hops *h, int ok, const struct addr *a)
{
    if (!h->any && ok)
        h->first = *a;
    h->any = 1;
    if (!ok || !trusted(a)) {
        h->stop = 1, h->stop_bad = !ok;
        if (ok)
            h->last = *a;
    }
}

/* One Forwarded element being read: its for= value, unquoted. */
struct element {
    int nfor, bad;
    struct addr a;
};

/* One pair of an element, s[0..n) split outside quoted strings ("for=...", `host="a,b"`). */
static void pair(struct element *el, const char *s, size_t n)
{
    trim(&s, &n);
    if (n < 4 || strncasecmp(s, "for=", 4) != 0)
        return; /* another parameter (or an empty pair): not ours to check */
    s += 4, n -= 4;
    if (++el->nfor > 1) { /* a parameter appears once per element (RFC 7239 4) */
        el->bad = 1;
        return;
    }
    char buf[64];
    size_t len = 0;
    if (n && *s == '"') { /* quoted-string: "..." with \-escapes, and nothing after it */
        size_t i = 1;
        for (; i < n && s[i] != '"'; i++) {
            if (s[i] == '\\' && ++i == n)
                break;
            if (len == sizeof buf)
                break;
            buf[len++] = s[i];
        }
        if (i != n - 1 || s[i] != '"') {
            el->bad = 1;
            return;
        }
        s = buf, n = len;
    }
    if (parse_node(s, n, &el->a) != 0)
        el->bad = 1;
}

/*
 * The hops of one Forwarded line, read left to right: elements split at `,`
 * and pairs at `;`, both only outside quoted strings (a `\` inside one escapes
 * the next character). An element without exactly one for= address is malformed.
 */
static void forwarded_line(struct hops *h, const char *s)
{
    struct element el = {0};
    const char *start = s;
    int quoted = 0;
    for (const char *p = s;; p++) {
        if (quoted && *p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '"')
            quoted = !quoted;
        if (*p && (quoted || (*p != ',' && *p != ';')))
            continue;
        pair(&el, start, (size_t)(p - start));
        start = p + 1;
        if (*p != ';') { /* the element ends: at a `,` or at the end of the line */
            hop(h, el.nfor == 1 && !el.bad, &el.a);
            memset(&el, 0, sizeof el);
        }
        if (!*p)
            return;
    }
}

/* The hops of one X-Forwarded-For line: nodes split at `,`. */
static void xff_line(struct hops *h, const char *s)
{
    for (;;) {
        const char *comma = strchr(s, ','), *e = s;
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        struct addr a;
        trim(&e, &n);
        hop(h, parse_node(e, n, &a) == 0, &a);
        if (!comma)
            return;
        s = comma + 1;
    }
}

int rill_proxy_header(const char *name)
{
    if (strcasecmp(name, "x-forwarded-for") == 0)
        use_forwarded = 0;
    else if (strcasecmp(name, "forwarded") == 0)
        use_forwarded = 1;
    else
        return -1;
    return 0;
}

const char *rill_proxy_header_name(void)
{
    return use_forwarded ? "Forwarded" : "X-Forwarded-For";
}

const char *rill_proxy_client(const char *peer, const char *const *lines, int nlines, char *out,
                              size_t cap)
{
    struct addr a;
    struct hops h = {0};
    snprintf(out, cap, "%s", peer);
    if (!nranges || parse_node(peer, strlen(peer), &a) != 0 || !trusted(&a))
        return out;
    for (int i = 0; i < nlines; i++)
        (use_forwarded ? forwarded_line : xff_line)(&h, lines[i]);
    if (h.stop ? !h.stop_bad : h.any)
        inet_ntop(h.stop ? h.last.family : h.first.family, h.stop ? h.last.b : h.first.b, out,
                  (socklen_t)cap);
    return out;
}
