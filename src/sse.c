/* SPDX-License-Identifier: MIT */
/*
 * rill.core.sse_parser([max_event_bytes]): the WHATWG event-stream parser of
 * src/sse_parse.c as a Lua object, for specs and for clients written in Lua:
 *   local p = rill.sse.parser(); for _, ev in ipairs(p:feed(bytes)) do ... end
 */
#include <lauxlib.h>
#include <string.h>

#include "effects.h"
#include "sse_parse.h"

#define PARSER_MT "rill.sse.parser"

struct parser {
    struct rill_sse_parser *p; /* NULL once closed */
};

static struct parser *check_parser(lua_State *L)
{
    struct parser *p = luaL_checkudata(L, 1, PARSER_MT);
    if (!p->p)
        luaL_error(L, "attempt to use a closed parser");
    return p;
}

/* Appends {data=, event=, id=, retry=} to the list on the top (data nil: no event fires). */
static int collect(const struct rill_sse_event *ev, void *arg)
{
    lua_State *L = arg;
    lua_createtable(L, 0, 4);
    if (ev->fires) {
        lua_pushlstring(L, ev->data, ev->data_len);
        lua_setfield(L, -2, "data");
    }
    lua_pushlstring(L, ev->type, ev->type_len);
    lua_setfield(L, -2, "event");
    lua_pushlstring(L, ev->id, ev->id_len);
    lua_setfield(L, -2, "id");
    if (ev->retry >= 0) {
        lua_pushinteger(L, ev->retry);
        lua_setfield(L, -2, "retry");
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* p:feed(bytes) → the list of blocks dispatched by these bytes, or raises when too big. */
static int parser_feed(lua_State *L)
{
    struct parser *p = check_parser(L);
    size_t len;
    const char *bytes = luaL_checklstring(L, 2, &len);
    lua_newtable(L);
    int rc = rill_sse_feed(p->p, bytes, len, collect, L);
    if (rc == RILL_SSE_TOO_BIG)
        return luaL_error(L, "sse parser: an event larger than its limit");
    if (rc != 0)
        return luaL_error(L, "sse parser: out of memory");
    return 1;
}

/* p:reset(): a new response on the same stream (the committed id is kept). */
static int parser_reset(lua_State *L)
{
    rill_sse_reset(check_parser(L)->p);
    return 0;
}

/* p:last_event_id() → the id a browser would send on reconnecting. */
static int parser_last_id(lua_State *L)
{
    size_t len;
    const char *id = rill_sse_last_id(check_parser(L)->p, &len);
    lua_pushlstring(L, id, len);
    return 1;
}

static int parser_close(lua_State *L)
{
    struct parser *p = luaL_checkudata(L, 1, PARSER_MT);
    if (p->p)
        rill_sse_free(p->p);
    p->p = NULL;
    return 0;
}

static int parser_new(lua_State *L)
{
    lua_Integer max = luaL_optinteger(L, 1, RILL_SSE_DEFAULT_MAX);
    luaL_argcheck(L, max > 0, 1, "max_event_bytes must be positive");
    struct parser *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->p = NULL;
    luaL_setmetatable(L, PARSER_MT);
    p->p = rill_sse_new((size_t)max);
    if (!p->p)
        return luaL_error(L, "out of memory");
    return 1;
}

static const luaL_Reg parser_methods[] = {
    {"feed", parser_feed},
    {"reset", parser_reset},
    {"last_event_id", parser_last_id},
    {"close", parser_close},
    {NULL, NULL},
};

static const luaL_Reg parser_meta[] = {
    {"__gc", parser_close},
    {"__close", parser_close},
    {NULL, NULL},
};

void rill_open_sse(lua_State *L)
{
    luaL_newmetatable(L, PARSER_MT);
    luaL_setfuncs(L, parser_meta, 0);
    luaL_newlib(L, parser_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, parser_new);
    lua_setfield(L, -2, "sse_parser");
}
