/* SPDX-License-Identifier: MIT */
/*
 * rill.core.sse_parser([max_event_bytes]): the WHATWG event-stream parser of
 * src/sse_parse.c as a Lua object, for specs and for clients written in Lua:
 *   local p = rill.sse.parser(); for _, ev in ipairs(p:feed(bytes)) do ... end
 * rill.core.sse_encode(event): rill.sse.encode, in C since every event a
 * proxy relays or the hub publishes goes through it.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "effects.h"
#include "luanum.h"
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
    lua_Integer max = lua_isnoneornil(L, 1) ? RILL_SSE_DEFAULT_MAX
                                            : rill_check_int_range(L, 1, 1, RILL_SSE_MAX_CAP);
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

/* ---- encode ---------------------------------------------------------------- */

/* Each line of s (CRLF, CR and LF all end one) as prefix + line + LF. */
static void add_lines(luaL_Buffer *b, const char *prefix, const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '\r' && s[i] != '\n')
            continue;
        luaL_addstring(b, prefix);
        luaL_addlstring(b, s + start, i - start);
        luaL_addchar(b, '\n');
        if (i + 1 < len && s[i] == '\r' && s[i + 1] == '\n')
            i++;
        start = i + 1;
    }
}

/*
 * Pushes ev[name] as a string, or returns NULL for nil (nothing pushed). A
 * string or a number, as Lua's own string arguments: anything else raises
 * rather than go out as "table: 0x...".
 */
static const char *field(lua_State *L, const char *name, size_t *len)
{
    int t = lua_getfield(L, 1, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(
            L, 1, lua_pushfstring(L, "%s: string expected, got %s", name, luaL_typename(L, -1)));
    return lua_tolstring(L, -1, len); /* a number becomes a string in its own slot */
}

/* An event or id field is one line: a line break would start another field. */
static const char *one_line(lua_State *L, const char *name, size_t *len)
{
    const char *s = field(L, name, len);
    if (s && (memchr(s, '\r', *len) || memchr(s, '\n', *len)))
        luaL_error(L, "sse: the %s field cannot contain a line break", name);
    return s;
}

/* An event's fields, read from the table at 1 and checked. */
struct fields {
    const char *comment, *event, *id, *data;
    size_t clen, elen, ilen, dlen;
    int has_retry;
    lua_Integer retry;
};

static void read_fields(lua_State *L, struct fields *f)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_createtable(L, 0, 1);
        lua_insert(L, 1);
        lua_setfield(L, 1, "data");
    } else if (!lua_istable(L, 1)) {
        luaL_typeerror(L, 1, "table or string");
    }
    lua_settop(L, 1);
    f->comment = field(L, "comment", &f->clen); /* 2 when present */
    f->event = one_line(L, "event", &f->elen);  /* then each in turn */
    f->id = one_line(L, "id", &f->ilen);
    if (f->id && memchr(f->id, '\0', f->ilen))
        luaL_error(L, "sse: the id field cannot contain NUL (browsers would ignore it)");
    f->has_retry = lua_getfield(L, 1, "retry") != LUA_TNIL;
    int valid = 0;
    f->retry = f->has_retry ? lua_tointegerx(L, -1, &valid) : 0;
    lua_pop(L, 1);
    if (f->has_retry && (!valid || f->retry < 0))
        luaL_error(L, "sse: retry must be a non-negative integer of milliseconds");
    f->data = field(L, "data", &f->dlen);
}

/* What comes before the id line: the comment and event lines. */
static void add_head(luaL_Buffer *b, const struct fields *f)
{
    if (f->comment)
        add_lines(b, ": ", f->comment, f->clen);
    if (f->event)
        add_lines(b, "event: ", f->event, f->elen);
}

/* What comes after it: the retry and data lines, and the blank line that ends the block. */
static void add_tail(luaL_Buffer *b, const struct fields *f)
{
    if (f->has_retry) {
        char ms[32];
        snprintf(ms, sizeof ms, "retry: %lld\n", (long long)f->retry);
        luaL_addstring(b, ms);
    }
    if (f->data)
        add_lines(b, "data: ", f->data, f->dlen);
    luaL_addchar(b, '\n');
}

int rill_sse_encode(lua_State *L)
{
    struct fields f;
    read_fields(L, &f);
    if (!f.comment && !f.event && !f.id && !f.has_retry && !f.data)
        return luaL_error(L, "sse: an event needs data, id, retry, event or comment");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_head(&b, &f);
    if (f.id)
        add_lines(&b, "id: ", f.id, f.ilen);
    add_tail(&b, &f);
    luaL_pushresult(&b);
    return 1;
}

/*
 * sse_encode_parts(event) → prefix, suffix: the block rill.sse.encode gives
 * for the event with an id, cut where its id line goes (checked the same,
 * the id field included). The hub's backplane assigns the id and puts the
 * line between them, so that a published event is encoded once.
 */
static int sse_encode_parts(lua_State *L)
{
    struct fields f;
    read_fields(L, &f);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_head(&b, &f);
    luaL_pushresult(&b);
    luaL_buffinit(L, &b);
    add_tail(&b, &f);
    luaL_pushresult(&b);
    return 2;
}

void rill_open_sse(lua_State *L)
{
    luaL_newmetatable(L, PARSER_MT);
    luaL_setfuncs(L, parser_meta, 0);
    luaL_newlib(L, parser_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, parser_new);
    lua_setfield(L, -2, "sse_parser");
    lua_pushcfunction(L, rill_sse_encode);
    lua_setfield(L, -2, "sse_encode");
    lua_pushcfunction(L, sse_encode_parts);
    lua_setfield(L, -2, "sse_encode_parts");
}
