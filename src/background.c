/* SPDX-License-Identifier: MIT */
/*
 * Background tasks: rill.spawn(fn) and rill.every (lua/rill/init.lua, on
 * this), a function run in a task of its own, outside any request, with
 * every effect available. A task starts on the loop turn after the call (at
 * the app's top level: once the server runs), ends when its function
 * returns, is logged when it raises, and is cancelled (its <close>
 * variables run, its pending effect undone) when the server stops or drains
 * for a reload, or by its handle. Each has a number, never reused, so a
 * handle kept after its task ended finds nothing rather than another task.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effects.h"
#include "log.h"
#include "sched.h"

struct background {
    struct rill_task task; /* first member */
    struct background *prev, *next;
    struct event *start; /* the first resume, on the next loop turn; NULL once started */
    lua_Integer id;
    char name[160]; /* for the log: "rill.every(5) at app.lua:12" */
};

static struct {
    struct background *all;
    lua_Integer next_id;
    int stopped; /* the server stops: no new task starts */
} bg;

static void unlink_task(struct background *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        bg.all = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

static void free_task(struct background *b)
{
    unlink_task(b);
    if (b->start)
        event_free(b->start);
    rill_task_release(&b->task);
    free(b);
}

static void on_done(struct rill_task *t, int status, int nres)
{
    struct background *b = (struct background *)t;
    if (status != LUA_OK && status != RILL_CANCELLED) {
        const char *tb = lua_tostring(t->co, -1);
        rill_log_at(RILL_LOG_ERROR, "%s: error: %s", b->name, tb ? tb : "?");
        t->w->stats.errors++;
    } else if (status == LUA_OK) {
        lua_pop(t->co, nres);
    }
    free_task(b);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct background *b = arg;
    (void)fd, (void)what;
    event_free(b->start);
    b->start = NULL;
    rill_task_resume(&b->task, 0); /* may end it: b may be gone */
}

/* Cancels b: its coroutine closed, its effect undone; freed now, or by on_done if it runs. */
static void cancel_task(struct background *b)
{
    if (b->task.running) {
        rill_task_cancel(&b->task); /* it ends as it yields: on_done frees it */
        return;
    }
    if (!b->start)
        rill_task_cancel(&b->task);
    free_task(b);
}

void rill_background_stop_all(void)
{
    bg.stopped = 1;
    for (struct background *b = bg.all, *next; b; b = next) {
        next = b->next;
        cancel_task(b);
    }
}

int rill_background_count(void)
{
    int n = 0;
    for (struct background *b = bg.all; b; b = b->next)
        n++;
    return n;
}

/* core.spawn_task(fn, name) → id: fn runs in a task of its own from the next loop turn. */
static int core_spawn_task(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *name = luaL_optstring(L, 2, "background task");
    struct rill_worker *w = rill_worker_get(L);
    if (bg.stopped)
        return luaL_error(L, "the server is stopping: no new background task starts");
    struct background *b = calloc(1, sizeof *b);
    if (!b)
        return luaL_error(L, "out of memory");
    rill_task_init(&b->task, w, on_done);
    b->start = evtimer_new(w->base, on_start, b);
    lua_State *co = b->start ? rill_task_open(&b->task) : NULL;
    if (!co) {
        if (b->start)
            event_free(b->start);
        free(b);
        return luaL_error(L, "out of memory");
    }
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->id = ++bg.next_id;
    b->next = bg.all;
    if (bg.all)
        bg.all->prev = b;
    bg.all = b;
    event_active(b->start, EV_TIMEOUT, 1);
    lua_pushinteger(L, b->id);
    return 1;
}

static struct background *find(lua_Integer id)
{
    for (struct background *b = bg.all; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

/* core.cancel_background(id) → whether it was still running (and is now cancelled). */
static int core_cancel_background(lua_State *L)
{
    struct background *b = find(luaL_checkinteger(L, 1));
    if (b)
        cancel_task(b);
    lua_pushboolean(L, b != NULL);
    return 1;
}

/* core.background_alive(id) → whether its task has not ended. */
static int core_background_alive(lua_State *L)
{
    lua_pushboolean(L, find(luaL_checkinteger(L, 1)) != NULL);
    return 1;
}

/* core.background_waiting(id) → the effect its task waits on ("rill.fetch"), or nil. */
static int core_background_waiting(lua_State *L)
{
    struct background *b = find(luaL_checkinteger(L, 1));
    if (!b || b->start || !b->task.cancel || b->task.running)
        return 0;
    lua_pushstring(L, b->task.effect ? b->task.effect : "an effect");
    return 1;
}

/* core.stop_background(): every task cancelled (rill.test, between specs); new ones may start. */
static int core_stop_background(lua_State *L)
{
    (void)L;
    rill_background_stop_all();
    bg.stopped = 0;
    return 0;
}

static const luaL_Reg background_funcs[] = {
    {"spawn_task", core_spawn_task},
    {"cancel_background", core_cancel_background},
    {"background_alive", core_background_alive},
    {"background_waiting", core_background_waiting},
    {"stop_background", core_stop_background},
    {NULL, NULL},
};

void rill_open_background(lua_State *L)
{
    luaL_setfuncs(L, background_funcs, 0);
}
