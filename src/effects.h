/* SPDX-License-Identifier: MIT */
#ifndef RILL_EFFECTS_H
#define RILL_EFFECTS_H
#include <lua.h>

/* Each adds its functions to the rill.core table on the top of the stack. */
void rill_open_sleep(lua_State *L);
/* rill.now()'s seconds: monotonic, or the fake clock's while it is on (sleep.c). */
double rill_clock_now(void);
/* The fake clock, if on and a sleeper waits: time moves to its deadline and the due wake. Woken
 * count. */
int rill_clock_step(void);
/* The fake clock is on and a task sleeps on it. */
int rill_clock_waiting(void);
void rill_open_response(lua_State *L);
void rill_open_request(lua_State *L);
void rill_open_process(lua_State *L);
void rill_open_fetch(lua_State *L);
void rill_open_hub(lua_State *L);
void rill_open_sse(lua_State *L);
/* rill.sse.encode as a lua_CFunction: the event table (or data string) at 1 → its block. */
int rill_sse_encode(lua_State *L);
void rill_open_tail(lua_State *L);
void rill_open_background(lua_State *L);
void rill_open_static(lua_State *L);
void rill_open_reqbody(lua_State *L);
/* Background tasks (rill.spawn, rill.every): all cancelled, and no new one starts (shutdown). */
void rill_background_stop_all(void);
/* The `once` tasks run here from now on (their runs start), or no longer (cancelled, kept). */
void rill_background_lead(int lead);

/* Free what the tail and hub modules hold for the worker (at shutdown). */
void rill_tail_shutdown(void);
void rill_hub_shutdown(lua_State *L);

/* A directory rill.tail may read below (realpath'd); -1 if it does not exist. */
int rill_tail_add_root(const char *dir);
/* The app's directory: relative tail paths start there; as_root: also the root (unless `/`). */
int rill_tail_app_dir(const char *dir, int as_root);

/* path, or the app's directory/path when relative, into out; NULL if too long. */
char *rill_app_path(const char *path, char *out, size_t cap);

/* Open tails (the metrics' gauge). */
int rill_tail_count(void);

/* Idle upstream connections kept for reuse (stats). */
int rill_fetch_idle_connections(void);

/*
 * Returns iterator, nil, nil, obj as io.lines does: in a generic for, the
 * object at obj_idx is the to-be-closed value, closed when the loop ends.
 * The iterator is a C closure of iter over the nup values on the stack.
 */
int rill_push_iterator(lua_State *L, lua_CFunction iter, int nup, int obj_idx);

/* t[key] = value, or a list when key repeats. Stack: key value → (popped); t absolute. */
void rill_table_add_multi(lua_State *L, int t);

int rill_open_core(lua_State *L);

#endif
