/* SPDX-License-Identifier: MIT */
#ifndef RILL_LUANUM_H
#define RILL_LUANUM_H
#include <lua.h>

/*
 * The one way a number from Lua becomes a duration, a size or a count in C.
 * Every such value is checked to be finite and within [min, max] before any
 * conversion: a C cast of NaN, an infinity or 1e300 to an integer type is
 * undefined, and a huge duration or a negative size turns a limit off.
 * Failures are `bad argument` errors naming the argument (and the option,
 * for a field of an options table) and the allowed range.
 */

/* Argument arg: a number in [min, max]. */
double rill_check_range(lua_State *L, int arg, double min, double max);
/* Argument arg: an integer in [min, max] (a float with an exact integer value counts). */
lua_Integer rill_check_int_range(lua_State *L, int arg, lua_Integer min, lua_Integer max);
/*
 * Field `name` of the options table at argument arg: dflt when absent (nil),
 * else a number in [min, max]. The error reads
 * "bad argument #2 to 'fetch' (timeout must be a number from 0 to 86400, got nan)".
 */
double rill_opt_field_range(lua_State *L, int arg, const char *name, double dflt, double min,
                            double max);
/* The same for an integer field. */
lua_Integer rill_opt_field_int(lua_State *L, int arg, const char *name, lua_Integer dflt,
                               lua_Integer min, lua_Integer max);

/* Longest duration rill accepts anywhere (a day is far past any sensible timeout: 1e9 s). */
#define RILL_MAX_SECONDS 1e9

#endif
