/* SPDX-License-Identifier: MIT */
/* libFuzzer: the upstream response parser, fed in two pieces at every length. */
#include <stdint.h>
#include <string.h>

#include "httpresp.h"

static void on_header(void *a, const char *n, size_t nl, const char *v, size_t vl)
{
    (void)a, (void)n, (void)nl, (void)v, (void)vl;
}
static void on_head(void *a, int status)
{
    (void)a, (void)status;
}
static void on_body(void *a, const char *d, size_t n)
{
    (void)d;
    *(size_t *)a += n;
}
static void on_done(void *a)
{
    (void)a;
}

static const struct rill_resp_handler handler = {on_header, on_head, on_body, on_done};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rill_resp_parser p;
    size_t body = 0, split = size ? data[0] % (size + 1) : 0;
    rill_resp_init(&p, &handler, &body, size > 1 && data[1] & 1);
    if (rill_resp_feed(&p, (const char *)data, split) == 0)
        rill_resp_feed(&p, (const char *)data + split, size - split);
    rill_resp_eof(&p);
    return 0;
}
