/* SPDX-License-Identifier: MIT */
#ifndef RILL_STATIC_H
#define RILL_STATIC_H
#include <lua.h>
#include <sys/types.h>

/*
 * The rill.file object at idx (raises if it is not one, or closed): its
 * descriptor is handed over to the caller, who closes it (the object is
 * closed); *size is the file's size when it was opened.
 */
int rill_file_take(lua_State *L, int idx, off_t *size);

#endif
