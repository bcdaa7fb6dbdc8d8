/* SPDX-License-Identifier: MIT */
#ifndef RILL_CLIENT_ERROR_H
#define RILL_CLIENT_ERROR_H
#include <lua.h>

/*
 * A client error: what a handler raises (through rill.core.client_error,
 * e.g. req:json() on a malformed body) when the request, not the app, is at
 * fault. The server answers it with its 4xx status and reason, no traceback
 * logged; anything else a handler raises stays a 500.
 */

/* 1 with *status and *reason (valid while the object is) if the value at idx is one; else 0. */
int rill_client_error_get(lua_State *L, int idx, int *status, const char **reason);

/* rill.core.client_error(status, reason) raises one; rill.core.client_error_of(e) → status, reason.
 */
void rill_open_client_error(lua_State *L);

#endif
