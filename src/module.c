/* SPDX-License-Identifier: MIT */
/* Entry point of build/lua/rill/core.so: require "rill.core" from a plain lua5.4. */
#include <lauxlib.h>
#include <lua.h>

#include "effects.h"
#include "worker.h"

LUAMOD_API int luaopen_rill_core(lua_State *L);

/*
 * lua_close unloads this library (dlclose) after the state's finalizers:
 * the worker (its loop, its buffers) is freed first, by this one, or it
 * would be left behind, unreachable (valgrind: definitely lost). It is made
 * before anything that uses the worker, so it is finalized after them all.
 */
static int module_gc(lua_State *L)
{
    (void)L;
    rill_worker_free();
    return 0;
}

LUAMOD_API int luaopen_rill_core(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "rill.core.unload") == LUA_TNIL) {
        lua_newuserdatauv(L, 0, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, module_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, "rill.core.unload");
    }
    lua_pop(L, 1);
    return rill_open_core(L);
}
