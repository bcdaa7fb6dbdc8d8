/* SPDX-License-Identifier: MIT */
#include "httpcheck.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "headscan.h"
#include "urlcode.h"

static int is_digits(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/*
 * Whether evhttp reads a body for this method. It reads none for HEAD
 * (evhttp_method_may_have_body), so the bytes of a HEAD's body would be
 * parsed as the next request on the connection: a smuggled one.
 */
static int body_is_read(const char *method)
{
    return strcmp(method, "HEAD") != 0;
}

/* Content-Length and Transfer-Encoding: one unambiguous framing, or refusal. */
static const char *check_framing(const struct rill_request_head *req)
{
    int cl = 0, te = 0, empty = 1;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct rill_header *h = &req->headers[i];
        if (strcasecmp(h->name, "Content-Length") == 0) {
            if (++cl > 1)
                return "more than one Content-Length";
            if (!is_digits(h->value))
                return "invalid Content-Length";
            empty = h->value[strspn(h->value, "0")] == '\0';
        } else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
            if (++te > 1)
                return "more than one Transfer-Encoding";
            if (strcasecmp(h->value, "chunked") != 0)
                return "Transfer-Encoding other than chunked";
        }
    }
    if (cl && te)
        return "both Content-Length and Transfer-Encoding";
    if ((te || (cl && !empty)) && !body_is_read(req->method))
        return "a HEAD request cannot carry a body";
    return NULL;
}

static const char *check_headers(const struct rill_request_head *req)
{
    int hosts = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct rill_header *h = &req->headers[i];
        hosts += strcasecmp(h->name, "Host") == 0;
    }
    if (hosts > 1 || (hosts == 0 && req->minor == 1))
        return "HTTP/1.1 needs exactly one Host";
    return check_framing(req);
}

/* The path, decoded (into req->path when given): no NUL, and no ".." segment to climb out with. */
static const char *check_path(const struct rill_request_head *req, const char *target)
{
    const char *end = strpbrk(target, "?#");
    size_t len = end ? (size_t)(end - target) : strlen(target);
    char local[RILL_PATH_MAX], *decoded = req->path ? req->path : local;
    if (len >= RILL_PATH_MAX)
        return "request target too long";
    ssize_t n = rill_url_decode(decoded, target, len, 0);
    if (n < 0 || memchr(decoded, '\0', (size_t)n))
        return "NUL in the path";
    decoded[n] = '\0';
    for (const char *p = decoded; (p = strstr(p, "/..")) != NULL; p += 3)
        if (p[3] == '/' || p[3] == '\0')
            return "'..' in the path";
    if (req->path_len)
        *req->path_len = (size_t)n;
    return NULL;
}

static const char *check_target(const struct rill_request_head *req)
{
    const char *t = req->target;
    if (strcmp(t, "*") == 0 && strcmp(req->method, "OPTIONS") == 0) {
        if (req->path_len)
            *req->path_len = SIZE_MAX;
        return NULL;
    }
    if (t[0] != '/')
        return "request target not in origin form";
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return "space, control or non-ASCII byte in the request target";
    return check_path(req, t);
}

const char *rill_check_request(const struct rill_request_head *req)
{
    if (req->major != 1 || (req->minor != 0 && req->minor != 1))
        return "unsupported HTTP version";
    if (!rill_is_token(req->method, strlen(req->method)))
        return "invalid method";
    const char *why = check_target(req);
    return why ? why : check_headers(req);
}
