/* SPDX-License-Identifier: MIT */
/*
 * Request bodies read from Lua (reqbody.h). rill.core gets:
 *   stream_body_path(prefix)  the bodies of requests under prefix are streamed
 *   body_chunk(req, limit)    the next piece of req's body, nil at its end (an effect)
 *   body_streamed(req)        whether req's body is streamed (the router reads
 *                             it whole for a route that did not ask for that)
 * lua/rill/body.lua builds req:body_reader() and req:read_body() on them.
 */
#include "reqbody.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "effects.h"
#include "headscan.h"
#include "luanum.h"
#include "request.h"
#include "urlcode.h"

#define MAX_PREFIXES 64
#define PREFIX_MAX   256
#define CHUNK_MAX    (64 * 1024) /* the largest piece one read gives Lua */
/* The largest limit a reader may give: every count stays exact in a Lua float too. */
#define LIMIT_MAX ((lua_Integer)1 << 53)

static struct {
    char path[PREFIX_MAX];
    size_t len;
} prefixes[MAX_PREFIXES];
static int nprefixes;
static uint64_t default_limit = 1024 * 1024;
static int stream_all; /* the app is one streamed handler: every path */

void rill_body_configure(size_t max_body_bytes)
{
    default_limit = max_body_bytes;
}

int rill_body_any_streams(void)
{
    return nprefixes > 0 || stream_all;
}

int rill_body_streams(const char *target, size_t len)
{
    char path[RILL_REQUEST_LINE_MAX];
    if (len == 0 || len > sizeof path || target[0] != '/')
        return 0; /* an absolute-form or asterisk target: left to evhttp */
    if (stream_all)
        return 1;
    ssize_t n = rill_url_decode(path, target, len, 0);
    for (int i = 0; i < nprefixes && n >= 0; i++)
        if ((size_t)n >= prefixes[i].len && memcmp(path, prefixes[i].path, prefixes[i].len) == 0)
            return 1;
    return 0;
}

void rill_body_stream_all(void)
{
    stream_all = 1;
}

/* core.stream_body_path(prefix): decoded paths starting with prefix have streamed bodies. */
static int stream_body_path(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && p[0] == '/', 1, "a path starting with '/' expected");
    luaL_argcheck(L, len < PREFIX_MAX, 1, "path too long");
    for (int i = 0; i < nprefixes; i++)
        if (prefixes[i].len == len && memcmp(prefixes[i].path, p, len) == 0)
            return 0;
    if (nprefixes == MAX_PREFIXES)
        return luaL_error(L, "too many streamed body paths (%d at most)", MAX_PREFIXES);
    memcpy(prefixes[nprefixes].path, p, len);
    prefixes[nprefixes++].len = len;
    return 0;
}

/* ---- a reader ----------------------------------------------------------------------- */

void rill_body_news(struct rill_request *r)
{
    if (r && r->body)
        rill_waiter_wake(&r->body->wait);
}

void rill_body_free(struct rill_request *r)
{
    if (!r->body)
        return;
    rill_waiter_clear(&r->body->wait);
    free(r->body);
    r->body = NULL;
}

/* Raises rill.core.client_error(status, reason): the server answers it, no traceback. */
static int client_error(lua_State *L, int status, const char *reason)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "rill.core");
    lua_getfield(L, -1, "client_error");
    lua_pushinteger(L, status);
    lua_pushstring(L, reason);
    lua_call(L, 2, 0);
    return 0; /* not reached */
}

static int too_large(lua_State *L, uint64_t limit)
{
    char reason[80];
    snprintf(reason, sizeof reason, "request body larger than %llu bytes",
             (unsigned long long)limit);
    return client_error(L, 413, reason);
}

/* A body evhttp read whole: given from where the last read stopped, a piece at a time. */
static int buffered_chunk(lua_State *L, struct rill_request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t total = evbuffer_get_length(in);
    if (total > r->body->limit)
        return too_large(L, r->body->limit);
    if (r->body->taken >= total) {
        lua_pushnil(L);
        return 1;
    }
    size_t n = total - (size_t)r->body->taken;
    n = n < CHUNK_MAX ? n : CHUNK_MAX;
    struct evbuffer_ptr at;
    evbuffer_ptr_set(in, &at, (size_t)r->body->taken, EVBUFFER_PTR_SET);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    evbuffer_copyout_from(in, &at, p, n); /* not drained: req.body still has it */
    luaL_pushresultsize(&b, n);
    r->body->taken += n;
    return 1;
}

static int chunk_k(lua_State *L, int status, lua_KContext ctx);

static int streamed_chunk(lua_State *L, struct rill_request *r, struct rill_conn *c,
                          long long declared)
{
    struct rill_reqbody *rb = r->body;
    if (declared >= 0 && (uint64_t)declared > rb->limit)
        return too_large(L, rb->limit); /* before reading any of it, and before 100 Continue */
    size_t avail;
    const char *why;
    switch (rill_conn_body_status(c, &avail, &why)) {
    case RILL_BODY_DATA: {
        size_t n = avail < CHUNK_MAX ? avail : CHUNK_MAX;
        if (rb->taken + n > rb->limit)
            return too_large(L, rb->limit);
        luaL_Buffer b;
        char *p = luaL_buffinitsize(L, &b, n);
        rill_conn_body_remove(c, p, n);
        luaL_pushresultsize(&b, n);
        rb->taken += n;
        return 1;
    }
    case RILL_BODY_END: lua_pushnil(L); return 1;
    case RILL_BODY_BAD: return client_error(L, 400, why);
    default:
        rill_conn_body_want(c, r->responded);
        return rill_waiter_park(L, &rb->wait, chunk_k, "req:body_reader");
    }
}

static int chunk_k(lua_State *L, int status, lua_KContext ctx)
{
    struct rill_request *r = rill_request_current(L);
    long long declared;
    (void)status, (void)ctx;
    if (!r->req && r->stash && !r->gone) { /* a lean stream's: only a request without a body */
        lua_pushnil(L);
        return 1;
    }
    if (!r->req || r->gone)
        return luaL_error(L, "request body read after the request ended");
    if (!r->conn || !rill_conn_body_streamed(r->conn, &declared))
        return buffered_chunk(L, r);
    return streamed_chunk(L, r, r->conn, declared);
}

/* core.body_chunk(req [, limit]) → the next piece of the running request's body, or nil. */
static int body_chunk(lua_State *L)
{
    struct rill_request *r = rill_request_current(L);
    uint64_t limit =
        lua_isnoneornil(L, 2) ? default_limit : (uint64_t)rill_check_int_range(L, 2, 0, LIMIT_MAX);
    if (!r->body) {
        if (!(r->body = calloc(1, sizeof *r->body)))
            return luaL_error(L, "out of memory");
        rill_waiter_init(&r->body->wait, r->task.w->base, NULL);
    }
    r->body->limit = limit;
    lua_settop(L, 0);
    return chunk_k(L, LUA_OK, 0);
}

/* core.body_streamed(req) → whether the running request's body is the gate's (streamed). */
static int body_streamed(lua_State *L)
{
    struct rill_request *r = rill_request_current(L);
    long long declared;
    lua_pushboolean(L, r->req && r->conn && rill_conn_body_streamed(r->conn, &declared));
    return 1;
}

static const luaL_Reg body_funcs[] = {
    {"stream_body_path", stream_body_path},
    {"body_chunk", body_chunk},
    {"body_streamed", body_streamed},
    {NULL, NULL},
};

void rill_open_reqbody(lua_State *L)
{
    luaL_setfuncs(L, body_funcs, 0);
}
