/* SPDX-License-Identifier: MIT */
#include "worker.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sched.h"

static struct rill_worker *worker;

struct rill_worker *rill_worker_get(lua_State *L)
{
    if (worker)
        return worker;
    worker = calloc(1, sizeof *worker);
    if (!worker)
        luaL_error(L, "out of memory");
    worker->base = event_base_new();
    if (!worker->base) {
        free(worker);
        worker = NULL;
        luaL_error(L, "cannot create the event loop");
    }
    worker->scratch = evbuffer_new();
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    worker->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error value, not a death */
    srandom((unsigned)getpid() ^ (unsigned)time(NULL)); /* retry jitter differs per run */
    return worker;
}

/* The worker's settings, before the worker itself exists (main sets them first). */
static size_t memory_cap, memory_used;
static int cap_enforced; /* while a task's Lua code runs */

/*
 * lua_newstate's allocator with a cap: past it an allocation fails, which Lua
 * turns into a "not enough memory" error in the handler that asked (500),
 * not a crashed worker. Shrinking and freeing always succeed. The cap holds
 * only while a task runs, inside lua_resume's protection: the small values C
 * builds between resumes (a new request's `req`) must never fail unprotected,
 * which would abort the worker.
 */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        memory_used -= old;
        return NULL;
    }
    if (memory_cap && cap_enforced && nsize > old && memory_used + (nsize - old) > memory_cap)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        memory_used = memory_used - old + nsize;
    return p;
}

static int on_panic(lua_State *L)
{
    rill_log("PANIC: %s", lua_tostring(L, -1));
    return 0; /* abort() follows */
}

lua_State *rill_worker_newstate(void)
{
    lua_State *L = lua_newstate(capped_alloc, NULL);
    if (L)
        lua_atpanic(L, on_panic);
    return L;
}

void rill_worker_set_memory_cap(size_t bytes)
{
    memory_cap = bytes;
}

int rill_worker_enforce_memory_cap(int on)
{
    int was = cap_enforced;
    cap_enforced = on;
    return was;
}

size_t rill_worker_memory(void)
{
    return memory_used;
}

#define HOOK_EVERY 1000 /* instructions between two budget checks */

/* Charges the task being resumed; past its budget, the handler fails. */
static void on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct rill_worker *w = worker;
    struct rill_task *t = w ? w->current : NULL;
    if (!t || !w->max_instructions)
        return;
    t->instructions += HOOK_EVERY;
    if (t->instructions > w->max_instructions)
        luaL_error(L, "instruction budget exceeded: %I instructions without yielding",
                   (lua_Integer)w->max_instructions);
}

void rill_worker_set_budget(lua_State *L, long long instructions)
{
    struct rill_worker *w = rill_worker_get(L);
    w->max_instructions = instructions;
    /* on the main thread: every coroutine created afterwards inherits it */
    lua_sethook(w->L, instructions > 0 ? on_count : NULL, instructions > 0 ? LUA_MASKCOUNT : 0,
                HOOK_EVERY);
}

void rill_worker_free(void)
{
    if (!worker)
        return;
    evbuffer_free(worker->scratch);
    event_base_free(worker->base);
    free(worker);
    worker = NULL;
}
