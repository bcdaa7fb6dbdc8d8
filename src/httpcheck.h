/* SPDX-License-Identifier: MIT */
#ifndef RILL_HTTPCHECK_H
#define RILL_HTTPCHECK_H
#include <stddef.h>

/*
 * What rill checks of a parsed request before Lua sees it, beyond what
 * evhttp checks by itself (notes/evhttp.md Q5): the framing a smuggler plays
 * with, Host, the version and the target. The syntax of the raw head (names,
 * control bytes, folding, size) was checked before parsing, by headscan.c. No libevent, no Lua:
 * ctest and the fuzzer call it directly.
 */

struct rill_header {
    const char *name, *value;
};

#define RILL_PATH_MAX 8192 /* a longer decoded path is refused */

struct rill_request_head {
    const char *method;
    const char *target; /* as sent */
    int major, minor;
    const struct rill_header *headers;
    size_t nheaders;
    /* optional: where the decoded path goes (RILL_PATH_MAX bytes), and its length */
    char *path;
    size_t *path_len;
};

/*
 * NULL when the request may go on; else a short reason (the answer is 400,
 * connection closed). With req->path set, a request that may go on leaves its
 * decoded path there (the target "*" has none: *path_len is then SIZE_MAX).
 */
const char *rill_check_request(const struct rill_request_head *req);

#endif
