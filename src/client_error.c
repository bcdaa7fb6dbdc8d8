/* SPDX-License-Identifier: MIT */
/*
 * Client errors (client_error.h): a small table { status = 4xx, reason = "..." }
 * whose metatable marks it, so that the server tells it from an app's own
 * error values. The reason is a short line of our own (it is sent as the
 * body): control bytes are refused, and it is cut to what a reply carries.
 */
#include "client_error.h"

#include <lauxlib.h>
#include <string.h>

#include "luanum.h"

#define CLIENT_ERROR_MT "rill.client_error"
#define REASON_MAX      120 /* the reply's body holds it and the request id */

/*
 * Raw reads only (no metamethod runs: this is called outside any protected
 * call), a status that is an integer of 4xx and a reason that is a string
 * the table itself holds, so the pointer stays valid while the table does.
 */
int rill_client_error_get(lua_State *L, int idx, int *status, const char **reason)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, CLIENT_ERROR_MT);
    int ours = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!ours)
        return 0;
    idx = lua_absindex(L, idx);
    lua_pushliteral(L, "status");
    int isint = lua_rawget(L, idx) == LUA_TNUMBER && lua_isinteger(L, -1);
    lua_Integer code = isint ? lua_tointeger(L, -1) : 0;
    lua_pushliteral(L, "reason");
    int isstr = lua_rawget(L, idx) == LUA_TSTRING;
    *reason = isstr ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 2);
    *status = (int)(code >= 400 && code <= 499 ? code : 0);
    return *reason != NULL && *status != 0;
}

/* client_error(status, reason): never returns. */
static int client_error(lua_State *L)
{
    int status = (int)rill_check_int_range(L, 1, 400, 499);
    size_t len;
    const char *reason = luaL_checklstring(L, 2, &len);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
            return luaL_argerror(L, 2, "a reason is one line of text, no control bytes");
    if (len > REASON_MAX) { /* cut at a character's start: the body is UTF-8 text */
        len = REASON_MAX;
        while (len > 0 && ((unsigned char)reason[len] & 0xc0) == 0x80)
            len--;
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, reason, len);
    lua_setfield(L, -2, "reason");
    luaL_setmetatable(L, CLIENT_ERROR_MT);
    return lua_error(L);
}

/* client_error_of(e) → status, reason; nil for anything else. */
static int client_error_of(lua_State *L)
{
    int status;
    const char *reason;
    if (!rill_client_error_get(L, 1, &status, &reason))
        return 0;
    lua_pushinteger(L, status);
    lua_pushstring(L, reason);
    return 2;
}

/* tostring(e): "400 malformed JSON: ...", for an error that reaches a plain Lua. */
static int client_error_tostring(lua_State *L)
{
    int status;
    const char *reason;
    if (rill_client_error_get(L, 1, &status, &reason))
        lua_pushfstring(L, "%d %s", status, reason);
    else
        lua_pushliteral(L, "client error (changed since it was raised)");
    return 1;
}

void rill_open_client_error(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_ERROR_MT)) {
        lua_pushcfunction(L, client_error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "rill.client_error"); /* getmetatable(e): this, not the table */
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, client_error);
    lua_setfield(L, -2, "client_error");
    lua_pushcfunction(L, client_error_of);
    lua_setfield(L, -2, "client_error_of");
}
