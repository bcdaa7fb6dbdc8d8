/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the raw head and chunked-body scanners. The first byte picks
 * which, the size limit, and how the rest is cut into pieces; fed whole and
 * in pieces, a scanner must stop at the same byte with the same verdict.
 */
#include <stdint.h>
#include <stdlib.h>

#include "headscan.h"

struct scan {
    struct rill_headscan head;
    struct rill_chunkscan body;
    int chunked;
};

static void scan_init(struct scan *s, int chunked, size_t max)
{
    s->chunked = chunked;
    rill_headscan_init(&s->head, max);
    rill_chunkscan_init(&s->body, max);
}

static enum rill_scan_result scan_feed(struct scan *s, const char *p, size_t n, size_t *used)
{
    return s->chunked ? rill_chunkscan_feed(&s->body, p, n, used)
                      : rill_headscan_feed(&s->head, p, n, used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = 16 + (size_t)(data[0] & 0x7f) * 4, step = 1 + data[0] % 7, used, at = 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct scan whole, pieces;
    scan_init(&whole, data[0] >> 7, max);
    scan_init(&pieces, data[0] >> 7, max);
    enum rill_scan_result a = scan_feed(&whole, p, n, &used), b = RILL_SCAN_MORE;
    size_t whole_at = used;
    for (size_t i = 0; i < n && b == RILL_SCAN_MORE; i += step) {
        size_t len = n - i < step ? n - i : step;
        b = scan_feed(&pieces, p + i, len, &used);
        at = i + used;
    }
    if (a != b || (a != RILL_SCAN_MORE && whole_at != at))
        abort();
    if (a == RILL_SCAN_BAD && !(whole.chunked ? whole.body.why : whole.head.why))
        abort();
    if (a == RILL_SCAN_BAD && whole.chunked && whole.body.line != pieces.body.line)
        abort();
    if (a == RILL_SCAN_BAD && !whole.chunked && whole.head.status != pieces.head.status)
        abort();
    return 0;
}
