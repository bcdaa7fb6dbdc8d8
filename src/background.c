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
 *
 * A `once` task runs only in the process that holds the lead: a single
 * process always does; with --workers the master gives the lead to one
 * serving worker (RILL_F_LEAD) and, when that one dies or a reload replaces
 * it, to another, where the task starts from the beginning. While it does
 * not run here, a once task is kept as its function, dormant.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effects.h"
#include "log.h"
#include "sched.h"

struct background {
    struct rill_task task; /* first member; a run's, while live */
    struct background *prev, *next;
    struct rill_worker *w;
    struct event *start; /* the run's first resume, on the next loop turn; NULL once started */
    lua_Integer id;
    int fn;                /* the function (registry ref): each run starts it */
    unsigned once : 1;     /* runs only while this process holds the lead */
    unsigned live : 1;     /* a run exists: started, or about to */
    unsigned dead : 1;     /* cancelled: no run starts again, the last one ends it */
    unsigned stopping : 1; /* a stop is closing its run: Lua in its <close> may call stop again */
    char name[160];        /* for the log: "rill.every(5) task at app.lua:12" */
};

static struct {
    struct background *all;
    lua_Integer next_id;
    int stopped;  /* the server stops: no new task starts */
    int follower; /* a worker without the lead: once tasks stay dormant */
    int count;    /* registered, live or dormant */
} bg;

#define MAX_TASKS 10000

static void free_task(struct background *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        bg.all = b->next;
    if (b->next)
        b->next->prev = b->prev;
    luaL_unref(b->w->L, LUA_REGISTRYINDEX, b->fn);
    bg.count--;
    free(b);
}

/* The run let go: its start event freed, its coroutine given back. */
static void end_run(struct background *b)
{
    if (b->start)
        event_free(b->start);
    b->start = NULL;
    rill_task_release(&b->task);
    b->live = 0;
}

static int start_run(lua_State *L, struct background *b);

static void on_done(struct rill_task *t, int status, int nres)
{
    struct background *b = (struct background *)t;
    if (status != LUA_OK && status != RILL_CANCELLED) {
        const char *tb = lua_tostring(t->co, -1);
        rill_log_at(RILL_LOG_ERROR, "%s: error: %s", b->name, tb ? tb : "?");
        b->w->stats.errors++;
    } else if (status == LUA_OK) {
        lua_pop(t->co, nres);
    }
    end_run(b);
    /* a once run cancelled because the lead moved away waits for it to come back */
    if (!(status == RILL_CANCELLED && b->once && !b->dead)) {
        free_task(b);
        return;
    }
    if (!bg.follower && !bg.stopped && start_run(b->w->L, b) != 0) /* it came back meanwhile */
        rill_log_at(RILL_LOG_ERROR, "%s: cannot start: out of memory", b->name);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct background *b = arg;
    (void)fd, (void)what;
    event_free(b->start);
    b->start = NULL;
    rill_task_resume(&b->task, 0); /* may end it: b may be gone */
}

/*
 * A run of b from the next loop turn; L is the running thread (its stack
 * carries the function over). 0, or -1 out of memory (nothing changed).
 */
static int start_run(lua_State *L, struct background *b)
{
    rill_task_init(&b->task, b->w, on_done);
    b->start = evtimer_new(b->w->base, on_start, b);
    /* the coroutine is the server's, not the handler's: --max-lua-memory must not fail it here,
       on the main thread, where an error has no handler */
    int capped = rill_worker_enforce_memory_cap(0);
    lua_State *co = b->start ? rill_task_open(&b->task) : NULL;
    rill_worker_enforce_memory_cap(capped);
    if (!co) {
        if (b->start)
            event_free(b->start);
        b->start = NULL;
        return -1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->fn);
    lua_xmove(L, co, 1);
    b->live = 1;
    event_active(b->start, EV_TIMEOUT, 1);
    return 0;
}

/*
 * Ends b's run now (its coroutine closed, its effect undone), or as it
 * yields if it is running (on_done). Then, unless keep, b itself.
 */
static void stop(struct background *b, int keep)
{
    if (!keep)
        b->dead = 1;
    if (b->stopping)
        return; /* called again from its own <close>: the stop in progress finishes */
    if (b->live && b->task.running) {
        rill_task_cancel(&b->task); /* the resume in progress ends it: on_done */
        return;
    }
    b->stopping = 1;
    if (b->live && !b->start)
        rill_task_cancel(&b->task); /* runs its <close>: Lua, which may cancel any task */
    if (b->live)
        end_run(b);
    b->stopping = 0;
    if (b->dead)
        free_task(b);
    else if (b->once && !bg.follower && !bg.stopped && start_run(b->w->L, b) != 0)
        rill_log_at(RILL_LOG_ERROR, "%s: cannot start: out of memory", b->name); /* lead back */
}

/*
 * Each scan below starts again from the head after a stop: a stop runs
 * <close> variables, Lua that may cancel another task (free the next one).
 * A task still dead in the list is one that runs now: on_done frees it.
 */
void rill_background_stop_all(void)
{
    bg.stopped = 1; /* and no <close> starts a new one */
    for (;;) {
        struct background *b = bg.all;
        while (b && (b->dead || b->stopping))
            b = b->next;
        if (!b)
            break;
        stop(b, 0);
    }
}

/* A once run to stop for a lost lead: live, not already told to close. */
static struct background *next_to_lose(void)
{
    for (struct background *b = bg.all; b; b = b->next)
        if (b->once && !b->dead && !b->stopping && b->live && !(b->task.running && b->task.closing))
            return b;
    return NULL;
}

void rill_background_lead(int lead)
{
    bg.follower = !lead;
    if (!lead) {
        for (struct background *b; (b = next_to_lose()) != NULL;)
            stop(b, 1);
        return;
    }
    for (struct background *b = bg.all; b && !bg.stopped; b = b->next)
        if (b->once && !b->dead && !b->live && start_run(b->w->L, b) != 0) /* no Lua runs */
            rill_log_at(RILL_LOG_ERROR, "%s: cannot start: out of memory", b->name);
}

/*
 * core.spawn_task(fn, name, once) → id: fn runs in a task of its own from
 * the next loop turn (a once task: while this process holds the lead).
 */
static int core_spawn_task(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *name = luaL_optstring(L, 2, "background task");
    int once = lua_toboolean(L, 3);
    struct rill_worker *w = rill_worker_get(L);
    if (bg.stopped)
        return luaL_error(L, "the server is stopping: no new background task starts");
    if (once && w->current) /* one made per request would run in whichever worker took it */
        return luaL_error(L, "a once task is made at the app's top level, not in a handler");
    if (bg.count >= MAX_TASKS)
        return luaL_error(L, "too many background tasks (%d): one per request would never end",
                          MAX_TASKS);
    lua_pushvalue(L, 1);
    int fn = luaL_ref(L, LUA_REGISTRYINDEX); /* before anything is allocated: it may raise */
    struct background *b = calloc(1, sizeof *b);
    if (!b) {
        luaL_unref(L, LUA_REGISTRYINDEX, fn);
        return luaL_error(L, "out of memory");
    }
    b->w = w;
    b->once = once != 0;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->fn = fn;
    b->id = ++bg.next_id;
    bg.count++;
    b->next = bg.all;
    if (bg.all)
        bg.all->prev = b;
    bg.all = b;
    if ((!b->once || !bg.follower) && start_run(L, b) != 0) {
        free_task(b);
        return luaL_error(L, "out of memory");
    }
    lua_pushinteger(L, b->id);
    return 1;
}

static struct background *find(lua_Integer id)
{
    for (struct background *b = bg.all; b; b = b->next)
        if (b->id == id && !b->dead)
            return b;
    return NULL;
}

/* core.cancel_background(id) → whether it was still there (and is now cancelled). */
static int core_cancel_background(lua_State *L)
{
    struct background *b = find(luaL_checkinteger(L, 1));
    if (b)
        stop(b, 0);
    lua_pushboolean(L, b != NULL);
    return 1;
}

/* core.background_alive(id) → whether its task has not ended (a dormant once task: true). */
static int core_background_alive(lua_State *L)
{
    lua_pushboolean(L, find(luaL_checkinteger(L, 1)) != NULL);
    return 1;
}

/* core.background_running(id) → whether a run of it exists in this process. */
static int core_background_running(lua_State *L)
{
    struct background *b = find(luaL_checkinteger(L, 1));
    lua_pushboolean(L, b && b->live);
    return 1;
}

/* core.background_waiting(id) → the effect its run waits on ("rill.fetch"), or nil. */
static int core_background_waiting(lua_State *L)
{
    struct background *b = find(luaL_checkinteger(L, 1));
    if (!b || !b->live || b->start || !b->task.cancel || b->task.running)
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

/* core.background_lead(on): as the master's LEAD would (rill.test: once tasks in process). */
static int core_background_lead(lua_State *L)
{
    rill_background_lead(lua_toboolean(L, 1));
    return 0;
}

static const luaL_Reg background_funcs[] = {
    {"spawn_task", core_spawn_task},
    {"cancel_background", core_cancel_background},
    {"background_alive", core_background_alive},
    {"background_running", core_background_running},
    {"background_waiting", core_background_waiting},
    {"stop_background", core_stop_background},
    {"background_lead", core_background_lead},
    {NULL, NULL},
};

void rill_open_background(lua_State *L)
{
    luaL_setfuncs(L, background_funcs, 0);
}
