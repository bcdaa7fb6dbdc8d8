/* SPDX-License-Identifier: MIT */
/* Unit tests for the request check (ctest). */
#include "httpcheck.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* Checks method/target/version and "name: value" pairs ending with NULL. */
static const char *check(const char *method, const char *target, int minor, const char **kv)
{
    struct rill_header h[16];
    size_t n = 0;
    for (; kv[2 * n]; n++)
        h[n] = (struct rill_header){kv[2 * n], kv[2 * n + 1]};
    struct rill_request_head head = {method, target, 1, minor, h, n, NULL, NULL};
    return rill_check_request(&head);
}

#define OK(...) CHECK(check(__VA_ARGS__) == NULL)
#define BAD(why, ...)                                                                              \
    do {                                                                                           \
        const char *got = check(__VA_ARGS__);                                                      \
        CHECK(got &&strstr(got, why));                                                             \
    } while (0)

/* The decoded path, handed back for req.path. */
static void test_path_out(void)
{
    const struct rill_header host[] = {{"Host", "x"}};
    char path[RILL_PATH_MAX];
    size_t len = 0;
    struct rill_request_head head = {"GET", "/a%20b/c?q=1", 1, 1, host, 1, path, &len};
    CHECK(rill_check_request(&head) == NULL && len == 6 && memcmp(path, "/a b/c", 6) == 0);
    head.method = "OPTIONS";
    head.target = "*";
    CHECK(rill_check_request(&head) == NULL && len == SIZE_MAX);
}

int main(void)
{
    test_path_out();
    const char *host[] = {"Host", "x", NULL};
    OK("GET", "/a?b=c", 1, host);
    OK("OPTIONS", "*", 1, host);
    OK("GET", "/", 0, (const char *[]){NULL});
    BAD("Host", "GET", "/", 1, (const char *[]){NULL});
    BAD("Host", "GET", "/", 1, (const char *[]){"Host", "a", "Host", "b", NULL});
    BAD("version", "GET", "/", 2, host);
    BAD("origin form", "GET", "http://x/", 1, host);
    BAD("origin form", "GET", "*", 1, host);
    BAD("space", "GET", "/a\x01", 1, host);
    BAD("NUL", "GET", "/a%00", 1, host);
    BAD("'..'", "GET", "/a/%2E%2E/b", 1, host);
    BAD("'..'", "GET", "/..", 1, host);
    OK("GET", "/a..b/..c", 1, host);
    OK("GET", "/", 1, (const char *[]){"Host", "x", "X", "tab\tok", NULL});
    BAD("more than one Content-Length", "POST", "/", 1,
        (const char *[]){"Host", "x", "Content-Length", "3", "content-length", "3", NULL});
    BAD("invalid Content-Length", "POST", "/", 1,
        (const char *[]){"Host", "x", "Content-Length", "+3", NULL});
    BAD("both", "POST", "/", 1,
        (const char *[]){"Host", "x", "Content-Length", "3", "Transfer-Encoding", "chunked", NULL});
    BAD("other than chunked", "POST", "/", 1,
        (const char *[]){"Host", "x", "Transfer-Encoding", "gzip, chunked", NULL});
    OK("POST", "/", 1, (const char *[]){"Host", "x", "Transfer-Encoding", "Chunked", NULL});
    BAD("invalid method", "GE T", "/", 1, host);
    return check_report();
}
