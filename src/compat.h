/* SPDX-License-Identifier: MIT */
#ifndef RILL_COMPAT_H
#define RILL_COMPAT_H
#include <lua.h>

/* Lua 5.4.4 (Debian 12) has lua_resetthread; 5.4.6 renamed it lua_closethread. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define rill_closethread(co, from) lua_closethread((co), (from))
#else
#define rill_closethread(co, from) ((void)(from), lua_resetthread(co))
#endif

#endif
