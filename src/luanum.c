/* SPDX-License-Identifier: MIT */
/* Checked numbers from Lua (luanum.h): finite, in range, or a `bad argument`. */
#include "luanum.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>

/*
 * "number expected, got string" as luaL_checknumber says it, or, out of range,
 * "number from 0 to 86400 expected, got inf"; a field's error starts with
 * its name ("timeout: ...").
 */
static int range_error(lua_State *L, int arg, const char *name, const char *kind, double min,
                       double max, int idx)
{
    const char *msg;
    if (lua_type(L, idx) != LUA_TNUMBER) {
        msg = lua_pushfstring(L, "%s expected, got %s", kind, luaL_typename(L, idx));
    } else {
        char bounds[64];
        snprintf(bounds, sizeof bounds, "from %.15g to %.15g", min, max);
        msg = lua_pushfstring(L, "%s %s expected, got %s", kind, bounds,
                              luaL_tolstring(L, idx, NULL));
    }
    if (name)
        msg = lua_pushfstring(L, "%s: %s", name, msg);
    return luaL_argerror(L, arg, msg);
}

static int in_range(double v, double min, double max)
{
    return isfinite(v) && v >= min && v <= max;
}

/* The number at idx in [min, max]; else raises, naming arg (and name). */
static double number_at(lua_State *L, int idx, int arg, const char *name, double min, double max)
{
    int isnum;
    double v = lua_tonumberx(L, idx, &isnum);
    if (lua_type(L, idx) != LUA_TNUMBER || !isnum || !in_range(v, min, max))
        range_error(L, arg, name, "number", min, max, idx);
    return v;
}

static lua_Integer integer_at(lua_State *L, int idx, int arg, const char *name, lua_Integer min,
                              lua_Integer max)
{
    int isint = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER)
        v = lua_tointegerx(L, idx, &isint); /* a float only when it is an exact integer */
    if (!isint || v < min || v > max)
        range_error(L, arg, name, "integer", (double)min, (double)max, idx);
    return v;
}

double rill_check_range(lua_State *L, int arg, double min, double max)
{
    return number_at(L, arg, arg, NULL, min, max);
}

lua_Integer rill_check_int_range(lua_State *L, int arg, lua_Integer min, lua_Integer max)
{
    return integer_at(L, arg, arg, NULL, min, max);
}

double rill_opt_field_range(lua_State *L, int arg, const char *name, double dflt, double min,
                            double max)
{
    double v = dflt;
    if (lua_getfield(L, arg, name) != LUA_TNIL)
        v = number_at(L, -1, arg, name, min, max);
    lua_pop(L, 1);
    return v;
}

lua_Integer rill_opt_field_int(lua_State *L, int arg, const char *name, lua_Integer dflt,
                               lua_Integer min, lua_Integer max)
{
    lua_Integer v = dflt;
    if (lua_getfield(L, arg, name) != LUA_TNIL)
        v = integer_at(L, -1, arg, name, min, max);
    lua_pop(L, 1);
    return v;
}
