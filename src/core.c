/* SPDX-License-Identifier: MIT */
/*
 * The rill.core table: effects, the response functions the driver uses, the
 * request/headers metatables, and rill.run, which drives the event loop from
 * a plain Lua (busted) until a function's coroutine is done.
 */
#include <lauxlib.h>
#include <time.h>

#include "client_error.h"
#include "effects.h"
#include "log.h"
#include "luanum.h"
#include "metrics.h"
#include "sched.h"

struct run_state {
    struct rill_task task; /* first member */
    lua_State *caller;
    int finished, status, nres;
};

/*
 * Moves the results (or the error object) to the caller of rill.run. A
 * function may return more values than the caller's stack has room for
 * (lua_xmove does not check): the room is asked for first, and when there is
 * none the caller gets an error instead.
 */
static void on_run_done(struct rill_task *t, int status, int nres)
{
    struct run_state *rs = (struct run_state *)t;
    rs->finished = 1;
    rs->status = status;
    rs->nres = nres;
    if (status == LUA_OK && !lua_checkstack(rs->caller, nres + 1)) {
        lua_pop(t->co, nres);
        rs->status = LUA_ERRRUN;
        lua_pushfstring(rs->caller, "rill.run: too many results (%d)", nres);
    } else if (status == LUA_OK) {
        lua_xmove(t->co, rs->caller, nres);
    } else if (status != RILL_CANCELLED) {
        lua_pop(t->co, 1); /* the traceback: the caller gets the error itself */
        lua_xmove(t->co, rs->caller, 1);
    }
    rill_task_release(t);
}

static void on_wait_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* One turn of the loop that waits up to seconds for an event (a private timer bounds it). */
static void wait_for_event(struct rill_worker *w, double seconds)
{
    struct event *t = evtimer_new(w->base, on_wait_over, NULL);
    if (!t)
        return;
    rill_timer_add(t, seconds);
    event_base_loop(w->base, EVLOOP_ONCE); /* the timer, or an event before it */
    event_free(t);
}

#define IDLE_MOMENT 0.001 /* seconds the loop waits for real I/O before a fake clock moves */
#define BUSY_TURNS  1000  /* or turns of the loop that resumed something */

/* rill.run(fn, ...): runs fn in a task, looping until it returns; gives its results. */
static int core_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    struct rill_worker *w = rill_worker_get(L);
    if (w->current)
        return luaL_error(L, "rill.run cannot be called inside a handler or another rill.run");
    int nargs = lua_gettop(L) - 1;
    struct run_state rs = {0};
    rill_task_init(&rs.task, w, on_run_done);
    rs.caller = L;
    lua_State *co = rill_task_open(&rs.task);
    if (!lua_checkstack(co, nargs + 1)) { /* the task's stack is as small as a new thread's */
        rill_task_release(&rs.task);
        return luaL_error(L, "rill.run: too many arguments (%d)", nargs);
    }
    lua_xmove(L, co, nargs + 1);
    rill_task_resume(&rs.task, nargs);
    for (int busy = 0; !rs.finished;) {
        unsigned long resumes = w->resumes;
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        int idle = w->resumes == resumes;
        if (rs.finished)
            break;
        /*
         * A fake clock (rill.test.clock) moves once the loop is idle: real
         * I/O in flight (a fetch's reply) gets a moment first, else virtual
         * time would race ahead of it and a ticker spin at full speed. A
         * stream of real events must not freeze it either: it moves at least
         * every BUSY_TURNS turns that resumed something.
         */
        if (rill_clock_waiting()) {
            if (idle) {
                unsigned long before = w->resumes;
                wait_for_event(w, IDLE_MOMENT);
                idle = w->resumes == before;
            }
            if (!rs.finished && (idle || ++busy >= BUSY_TURNS)) {
                busy = 0;
                rill_clock_step();
            }
            continue;
        }
        if (!idle)
            continue;
        if (event_base_loop(w->base, EVLOOP_ONCE) != 0 && !rs.finished) {
            rill_task_cancel(&rs.task);
            rill_task_release(&rs.task);
            return luaL_error(L, "rill.run: the function waits on something that cannot happen");
        }
    }
    if (rs.status == RILL_CANCELLED)
        return luaL_error(L, "rill.run: the function was cancelled");
    if (rs.status != LUA_OK)
        return lua_error(L);
    return rs.nres;
}

/* core.log(level, message): a line in the error log ("error", "warn", "info" or "debug"). */
static int core_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *msg = luaL_checkstring(L, 2);
    rill_log_at((enum rill_log_level)level, "%s", msg);
    return 0;
}

/*
 * core.step([wait]) → whether a task was resumed: one turn of the loop from
 * outside any task (rill.test's in-process streams), and when it resumed
 * nothing, one more that waits up to wait seconds (default 0) for an event.
 */
static int core_step(lua_State *L)
{
    double wait = lua_isnoneornil(L, 1) ? 0 : rill_check_range(L, 1, 0, 3600);
    struct rill_worker *w = rill_worker_get(L);
    if (w->current)
        return luaL_error(L, "rill.core.step runs the loop: not from inside a task");
    unsigned long resumes = w->resumes;
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    if (w->resumes == resumes && wait > 0)
        wait_for_event(w, wait);
    lua_pushboolean(L, w->resumes != resumes);
    return 1;
}

int rill_push_iterator(lua_State *L, lua_CFunction iter, int nup, int obj_idx)
{
    obj_idx = lua_absindex(L, obj_idx);
    lua_pushcclosure(L, iter, nup);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, obj_idx);
    return 4;
}

/* rill.now(): monotonic seconds, for deadlines in tests and handlers. */
static int core_now(lua_State *L)
{
    lua_pushnumber(L, rill_clock_now());
    return 1;
}

/*
 * coroutine.resume as Lua's own, and telling the instruction budget which
 * coroutine runs (worker.c), so that a loop in a nested one is stopped too.
 * rill.coroutine builds the effect-aware resume and wrap on it.
 */
static int core_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    int narg = lua_gettop(L) - 1, nres;
    if (!lua_checkstack(co, narg)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "too many arguments to resume");
        return 2;
    }
    lua_xmove(L, co, narg);
    struct rill_worker *w = rill_worker_get(L);
    struct rill_resume_link link = {co, L, w->resumed}; /* for rill_task_check_wait */
    w->resumed = &link;
    lua_State *outer = rill_worker_enter(co);
    int status = lua_resume(co, L, narg, &nres);
    rill_worker_leave(co, outer);
    w->resumed = link.outer;
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_xmove(co, L, 1); /* the error */
        return 2;
    }
    if (!lua_checkstack(L, nres + 1)) {
        lua_pop(co, nres);
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "too many results to resume");
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return nres + 1;
}

static const luaL_Reg core_funcs[] = {
    {"resume", core_resume}, {"run", core_run}, {"now", core_now}, {"stats", rill_metrics_push},
    {"step", core_step},     {"log", core_log}, {NULL, NULL},
};

int rill_open_core(lua_State *L)
{
    luaL_newlib(L, core_funcs);
    lua_pushlightuserdata(L, rill_effect_tag());
    lua_setfield(L, -2, "EFFECT");
#ifdef RILL_VERSION
    lua_pushliteral(L, RILL_VERSION);
    lua_setfield(L, -2, "version");
#endif
    rill_open_sleep(L);
    rill_open_response(L);
    rill_open_request(L);
    rill_open_process(L);
    rill_open_fetch(L);
    rill_open_hub(L);
    rill_open_sse(L);
    rill_open_tail(L);
    rill_open_client_error(L);
    rill_open_background(L);
    rill_open_static(L);
    rill_open_reqbody(L);
    return 1;
}
