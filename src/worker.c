/* SPDX-License-Identifier: MIT */
#include "worker.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sched.h"

static struct rill_worker *worker;

/*
 * The loop's epoll changes are kept in a changelist and made once per turn:
 * evhttp turns a connection's read and write interest off and on again
 * several times per request, and most of those changes cancel out before the
 * next epoll_wait. (The changelist misreports fds made by dup(); rill's loop
 * has none.)
 */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

struct rill_worker *rill_worker_get(lua_State *L)
{
    if (worker)
        return worker;
    worker = calloc(1, sizeof *worker);
    if (!worker)
        luaL_error(L, "out of memory");
    worker->base = new_base();
    if (!worker->base) {
        free(worker);
        worker = NULL;
        luaL_error(L, "cannot create the event loop");
    }
    worker->scratch = evbuffer_new();
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    worker->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_getglobal(L, "xpcall"); /* before the app runs: what a coroutine's frames are compared to */
    worker->xpcall_fn = lua_tocfunction(L, -1);
    lua_getglobal(L, "pcall");
    worker->pcall_fn = lua_tocfunction(L, -1);
    lua_pop(L, 2);
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
    rill_log_at(RILL_LOG_ERROR, "PANIC: %s", lua_tostring(L, -1));
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

/*
 * The instruction budget. A count hook makes Lua trap on every instruction
 * (luaG_traceexec), which cost a hello-world request 13% of its instructions,
 * so no coroutine carries it by default. A tick of the process's CPU time
 * (SIGPROF every TICK_US) arms it on the coroutine running at that moment:
 * only a resume that runs that long pays, and it counts its budget from then
 * on. A handler is never stopped before --max-instructions, and a runaway one
 * at most a tick later. lua_sethook is the one Lua call made to be safe from a
 * signal handler (lua.c's Ctrl-C works so).
 */
#define HOOK_EVERY 1000 /* instructions between two budget checks */
#define TICK_US    10000

/* The coroutine running Lua code now (a task's, or one it resumed), if any.
   Written by the loop, read by the tick: a pointer store is atomic on our targets. */
static lua_State *volatile running;

/* Charges the task being resumed; past its budget, the handler fails. */
static void on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct rill_worker *w = worker;
    struct rill_task *t = w ? w->current : NULL;
    if (!t || !w->max_instructions)
        return;
    t->instructions += HOOK_EVERY;
    if (t->instructions > w->max_instructions) {
        t->over_budget = 1; /* counted as the resume ends: a pcall may catch this raise */
        luaL_error(L, "instruction budget exceeded: %I instructions without yielding",
                   (lua_Integer)w->max_instructions);
    }
}

static void on_tick(int sig)
{
    (void)sig;
    lua_State *co = running;
    if (co && !lua_gethookmask(co))
        lua_sethook(co, on_count, LUA_MASKCOUNT, HOOK_EVERY);
}

lua_State *rill_worker_enter(lua_State *co)
{
    lua_State *outer = running;
    running = co;
    return outer;
}

void rill_worker_leave(lua_State *co, lua_State *outer)
{
    running = outer; /* first: a tick from here on arms the outer one */
    if (lua_gethookmask(co))
        lua_sethook(co, NULL, 0, 0);
}

static void set_tick(long usec)
{
    struct itimerval tick = {{0, usec}, {0, usec}};
    setitimer(ITIMER_PROF, &tick, NULL);
}

void rill_worker_set_budget(lua_State *L, long long instructions)
{
    struct rill_worker *w = rill_worker_get(L);
    w->max_instructions = instructions;
    if (instructions > 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_tick;
        sa.sa_flags = SA_RESTART; /* reads and writes go on; epoll_wait's EINTR libevent takes */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPROF, &sa, NULL);
    }
    set_tick(instructions > 0 ? TICK_US : 0);
}

void rill_worker_free(void)
{
    if (!worker)
        return;
    if (worker->max_instructions)
        set_tick(0);
    evbuffer_free(worker->scratch);
    event_base_free(worker->base);
    free(worker);
    worker = NULL;
}
