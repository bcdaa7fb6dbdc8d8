/* SPDX-License-Identifier: MIT */
/*
 * The ceiling of rill's architecture: a bare evhttp server in C serving the
 * bench workloads byte for byte as bench/app.lua does, with no Lua.
 *   bare_evhttp PORT
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct evbuffer *buf;

static void on_hello(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evbuffer_add(buf, "hello world\n", 12);
    evhttp_send_reply(req, 200, "OK", buf);
}

/* 100 lines, each its own chunk */
static void on_chunks(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply_start(req, 200, "OK");
    for (int i = 1; i <= 100; i++) {
        evbuffer_add_printf(buf, "line %03d of the hundred-line body\n", i);
        evhttp_send_reply_chunk(req, buf);
    }
    evhttp_send_reply_end(req);
}

/* an idle event stream: headers, then nothing */
static void on_sse(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    (void)arg;
    if (strcmp(uri, "/hello") == 0)
        on_hello(req);
    else if (strcmp(uri, "/chunks") == 0)
        on_chunks(req);
    else if (strcmp(uri, "/sse") == 0)
        on_sse(req);
    else
        evhttp_send_error(req, 404, NULL);
}

int main(int argc, char **argv)
{
    /* as rill's loop (src/worker.c): epoll changes coalesced once per turn */
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    struct evhttp *http = evhttp_new(base);
    buf = evbuffer_new();
    evhttp_set_gencb(http, on_request, NULL);
    if (argc != 2 || evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)atoi(argv[1])) != 0) {
        fprintf(stderr, "usage: bare_evhttp PORT\n");
        return 2;
    }
    fprintf(stderr, "bare_evhttp listening on %s\n", argv[1]);
    event_base_dispatch(base);
    return 0;
}
