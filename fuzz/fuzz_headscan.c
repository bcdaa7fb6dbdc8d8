/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the raw head scanner. The first byte picks the size limit and
 * how the rest is cut into pieces; whole and in pieces must agree.
 */
#include <stdint.h>
#include <stdlib.h>

#include "headscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = 16 + (size_t)data[0] * 4, step = 1 + data[0] % 7, used, done = 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct rill_headscan whole, pieces;
    rill_headscan_init(&whole, max);
    rill_headscan_init(&pieces, max);
    enum rill_headscan_result a = rill_headscan_feed(&whole, p, n, &used), b = RILL_HEAD_MORE;
    size_t a_used = used;
    for (size_t i = 0; i < n && b == RILL_HEAD_MORE; i += step) {
        size_t len = n - i < step ? n - i : step;
        b = rill_headscan_feed(&pieces, p + i, len, &used);
        done += used;
    }
    if (a != b || (a == RILL_HEAD_DONE && a_used != done) ||
        (a == RILL_HEAD_BAD && (whole.status != pieces.status || !whole.why)))
        abort();
    return 0;
}
