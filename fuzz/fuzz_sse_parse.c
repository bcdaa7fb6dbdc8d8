/* SPDX-License-Identifier: MIT */
/* libFuzzer: the event-stream parser, whole and split, must agree and stay bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse_parse.h"

static int count(const struct rill_sse_event *ev, void *arg)
{
    (void)ev;
    ++*(int *)arg;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int whole = 0, pieces = 0;
    struct rill_sse_parser *a = rill_sse_new(4096), *b = rill_sse_new(4096);
    int ra = rill_sse_feed(a, (const char *)data, size, count, &whole), rb = 0;
    for (size_t i = 0; i < size && rb == 0; i += 3)
        rb = rill_sse_feed(b, (const char *)data + i, size - i < 3 ? size - i : 3, count, &pieces);
    if (ra == 0 && rb == 0 && whole != pieces)
        abort(); /* the same bytes must give the same events however they arrive */
    if (rill_sse_memory(a) > 4096 + 1024 || rill_sse_memory(b) > 4096 + 1024)
        abort(); /* the cap holds */
    rill_sse_free(a);
    rill_sse_free(b);
    return 0;
}
