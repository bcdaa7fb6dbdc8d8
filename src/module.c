/* SPDX-License-Identifier: MIT */
/* Entry point of build/lua/rill/core.so: require "rill.core" from a plain lua5.4. */
#include <lua.h>

#include "effects.h"

LUAMOD_API int luaopen_rill_core(lua_State *L);

LUAMOD_API int luaopen_rill_core(lua_State *L)
{
    return rill_open_core(L);
}
