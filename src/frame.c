/* SPDX-License-Identifier: MIT */
/*
 * Frames of the master <-> worker channel: writing into a growing buffer,
 * reading in place with every length checked. A malformed frame (from a
 * worker whose memory went bad, say) must never make the master read out
 * of bounds: a bad read sets f->bad, and every read after it fails.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

static void reserve(struct rill_frame_out *f, size_t more)
{
    if (f->failed || f->len + more <= f->cap)
        return;
    size_t cap = f->cap ? f->cap : 256;
    while (cap < f->len + more)
        cap *= 2;
    unsigned char *p = realloc(f->p, cap);
    if (!p) {
        f->failed = 1;
        return;
    }
    f->p = p;
    f->cap = cap;
}

static void put(struct rill_frame_out *f, const void *bytes, size_t n)
{
    reserve(f, n);
    if (f->failed)
        return;
    memcpy(f->p + f->len, bytes, n);
    f->len += n;
}

static void put_be(struct rill_frame_out *f, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)(v & 0xff);
    put(f, b, (size_t)bytes);
}

void rill_frame_begin(struct rill_frame_out *f, enum rill_frame_type type)
{
    f->len = 0;
    f->failed = 0;
    put_be(f, 0, RILL_FRAME_HEAD); /* the length, filled in by rill_frame_end */
    unsigned char t = (unsigned char)type;
    put(f, &t, 1);
}

void rill_frame_u64(struct rill_frame_out *f, uint64_t v)
{
    put_be(f, v, 8);
}

void rill_frame_str(struct rill_frame_out *f, const char *s, size_t len)
{
    if (len > RILL_FRAME_MAX) {
        f->failed = 1;
        return;
    }
    put_be(f, len, 4);
    put(f, s, len);
    put(f, "", 1);
}

void rill_frame_opt(struct rill_frame_out *f, enum rill_opt tag, const char *s, size_t len)
{
    unsigned char t = (unsigned char)(s ? tag : RILL_OPT_NONE);
    put(f, &t, 1);
    if (t != RILL_OPT_NONE)
        rill_frame_str(f, s, len);
}

int rill_frame_end(struct rill_frame_out *f)
{
    if (f->failed || f->len > RILL_FRAME_MAX)
        return -1;
    size_t body = f->len - RILL_FRAME_HEAD;
    for (int i = RILL_FRAME_HEAD - 1; i >= 0; i--, body >>= 8)
        f->p[i] = (unsigned char)(body & 0xff);
    return 0;
}

void rill_frame_release(struct rill_frame_out *f)
{
    free(f->p);
    f->p = NULL;
    f->len = f->cap = 0;
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

size_t rill_frame_size(const unsigned char *head)
{
    uint64_t body = get_be(head, RILL_FRAME_HEAD);
    if (body < 1 || body > RILL_FRAME_MAX)
        return 0;
    return RILL_FRAME_HEAD + (size_t)body;
}

int rill_frame_open(struct rill_frame_in *f, const unsigned char *frame, size_t size)
{
    f->bad = size < RILL_FRAME_HEAD + 1;
    f->type = f->bad ? 0 : frame[RILL_FRAME_HEAD];
    f->p = frame + RILL_FRAME_HEAD + 1;
    f->left = f->bad ? 0 : size - RILL_FRAME_HEAD - 1;
    return f->bad ? -1 : 0;
}

/* The next n bytes, or NULL (and the frame bad) when fewer are left. */
static const unsigned char *take(struct rill_frame_in *f, size_t n)
{
    if (f->bad || f->left < n) {
        f->bad = 1;
        return NULL;
    }
    const unsigned char *p = f->p;
    f->p += n;
    f->left -= n;
    return p;
}

uint64_t rill_frame_get_u64(struct rill_frame_in *f)
{
    const unsigned char *p = take(f, 8);
    return p ? get_be(p, 8) : 0;
}

const char *rill_frame_get_str(struct rill_frame_in *f, size_t *len)
{
    const unsigned char *n = take(f, 4);
    size_t l = n ? (size_t)get_be(n, 4) : 0;
    const unsigned char *s = n && l < f->left ? take(f, l + 1) : take(f, SIZE_MAX);
    if (!s || s[l] != '\0') {
        f->bad = 1;
        *len = 0;
        return "";
    }
    *len = l;
    return (const char *)s;
}

enum rill_opt rill_frame_get_opt(struct rill_frame_in *f, const char **s, size_t *len)
{
    const unsigned char *t = take(f, 1);
    *s = NULL;
    *len = 0;
    if (!t || *t == RILL_OPT_NONE)
        return RILL_OPT_NONE;
    if (*t != RILL_OPT_STRING && *t != RILL_OPT_NUMBER) {
        f->bad = 1;
        return RILL_OPT_NONE;
    }
    *s = rill_frame_get_str(f, len);
    return f->bad ? RILL_OPT_NONE : (enum rill_opt) * t;
}

int rill_frame_done(const struct rill_frame_in *f)
{
    return f->bad || f->left ? -1 : 0;
}
