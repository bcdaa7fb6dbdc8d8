/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the request check. The input is split on newlines into a
 * method, a target and "name: value" headers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1), *lines[66];
    struct rill_header headers[64];
    size_t n = 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *p = copy, *nl; n < 66; p = nl + 1) {
        lines[n++] = p;
        if (!(nl = strchr(p, '\n')))
            break;
        *nl = '\0';
    }
    struct rill_request_head head = {
        n > 0 ? lines[0] : "", n > 1 ? lines[1] : "/", 1, size % 3, headers, 0, NULL, NULL};
    for (size_t i = 2; i < n; i++) {
        char *colon = strchr(lines[i], ':');
        if (colon)
            *colon = '\0';
        headers[head.nheaders++] = (struct rill_header){lines[i], colon ? colon + 1 : ""};
    }
    char path[RILL_PATH_MAX];
    size_t path_len = 0;
    if (size % 2) { /* half the inputs also hand the decoded path back */
        head.path = path;
        head.path_len = &path_len;
    }
    if (!rill_check_request(&head) && head.path && path_len != SIZE_MAX &&
        path_len >= RILL_PATH_MAX)
        abort();
    free(copy);
    return 0;
}
