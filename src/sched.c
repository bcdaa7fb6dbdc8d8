/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: resumes task coroutines from libevent callbacks.
 *
 * Yield protocol: an effect (rill.sleep, a body write that waits for the
 * client to drain, ...) arms a libevent event, stores an undo hook in
 * t->cancel and yields the effect tag. A user's own coroutine.resume/wrap
 * pass that tag up to the task (lua/rill/coroutine.lua), so lua_resume here
 * sees it whatever the nesting. The event's callback later resumes the task
 * with the effect's results, which travel back down to the effect's caller.
 */
#include "sched.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "compat.h"
#include "log.h"
#include "metrics.h"

static char effect_tag;

void *rill_effect_tag(void)
{
    return &effect_tag;
}

void rill_task_init(struct rill_task *t, struct rill_worker *w, rill_done_fn done)
{
    memset(t, 0, sizeof *t);
    t->w = w;
    t->done = done;
    t->ref = LUA_NOREF;
}

lua_State *rill_task_open(struct rill_task *t)
{
    struct rill_worker *w = t->w;
    lua_State *L = w->L;
    if (w->npool > 0) {
        t->ref = w->pool[--w->npool];
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
        t->co = lua_tothread(L, -1);
        lua_pop(L, 1);
    } else {
        t->co = lua_newthread(L);
        t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    t->spoiled = 0;
    w->stats.tasks++;
    return t->co;
}

void rill_resource_add(struct rill_task *t, struct rill_resource *res)
{
    res->owner = t;
    res->prev = NULL;
    res->next = t->resources;
    if (t->resources)
        t->resources->prev = res;
    t->resources = res;
}

void rill_resource_remove(struct rill_resource *res)
{
    if (!res->owner)
        return;
    if (res->prev)
        res->prev->next = res->next;
    else
        res->owner->resources = res->next;
    if (res->next)
        res->next->prev = res->prev;
    res->owner = NULL;
    res->prev = res->next = NULL;
}

static void close_resources(struct rill_task *t)
{
    while (t->resources) {
        struct rill_resource *res = t->resources;
        rill_resource_remove(res);
        res->close(res);
    }
}

void rill_task_release(struct rill_task *t)
{
    struct rill_worker *w = t->w;
    if (t->ref == LUA_NOREF)
        return;
    close_resources(t);
    if (t->timer) /* deleted if pending */
        event_free(t->timer);
    t->timer = NULL;
    lua_settop(t->co, 0);
    if (lua_status(t->co) == LUA_OK && !t->spoiled && w->npool < RILL_THREAD_POOL)
        w->pool[w->npool++] = t->ref; /* a finished coroutine can run a new function */
    else
        luaL_unref(w->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
    t->co = NULL;
    w->stats.tasks--;
}

static void run_cancel_hook(struct rill_task *t)
{
    rill_cancel_fn cancel = t->cancel;
    t->cancel = NULL;
    if (cancel)
        cancel(t);
}

/*
 * Suspended inside an xpcall (rill.every runs its function in one), a
 * coroutine keeps that call's message handler slot (L->errfunc), which
 * 5.4.4's lua_resetthread does not clear: a task that reused it would have
 * its first error run a stale handler ("error in error handling"). The
 * innermost protected call on its stack says: a pcall inside sets no handler.
 */
static int suspended_in_xpcall(struct rill_task *t)
{
    lua_State *co = t->co;
    lua_Debug ar;
    if (lua_status(co) != LUA_YIELD || !t->w->xpcall_fn || !lua_checkstack(co, 1))
        return lua_status(co) == LUA_YIELD; /* unknown: not pooled, to be safe */
    for (int level = 0; lua_getstack(co, level, &ar); level++) {
        lua_getinfo(co, "f", &ar);
        lua_CFunction fn = lua_tocfunction(co, -1);
        lua_pop(co, 1);
        if (fn && fn == t->w->xpcall_fn)
            return 1;
        if (fn && fn == t->w->pcall_fn)
            return 0;
    }
    return 0;
}

/*
 * Closes t->co so its <close> variables run, and logs an error a __close
 * handler raised. After an error, 5.4.4's lua_resetthread returns the
 * original status again; with has_original, that error is on the main
 * thread's stack (below the traceback) and is no news.
 */
static void close_coroutine(struct rill_task *t, int has_original)
{
    lua_State *co = t->co, *L = t->w->L;
    if (suspended_in_xpcall(t))
        t->spoiled = 1; /* not given to another task */
    /* its __close handlers are Lua that runs: a cancel they ask for waits (rill_task_cancel) */
    unsigned was_running = t->running;
    t->running = 1;
    int status = rill_closethread(co, L);
    t->running = was_running;
    if (!was_running)
        t->closing = 0; /* asked for by its own __close: this close was it */
    if (status != LUA_OK) {
        lua_xmove(co, L, 1);
        if (!has_original || !lua_rawequal(L, -1, -3)) {
            const char *msg = lua_tostring(L, -1);
            rill_log_at(RILL_LOG_ERROR, "error while closing a handler: %s",
                        msg ? msg : "(not a string)");
        }
        lua_pop(L, 1);
    }
    lua_settop(co, 0);
}

void rill_task_cancel(struct rill_task *t)
{
    if (t->running) {
        t->closing = 1; /* the resume in progress finishes the job */
        return;
    }
    run_cancel_hook(t);
    close_coroutine(t, 0);
}

/* thread, error object → the message with the thread's traceback (run protected: it allocates) */
static int describe_error(lua_State *L)
{
    const char *msg = lua_tostring(L, 2);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 2));
    luaL_traceback(L, lua_tothread(L, 1), msg, 0);
    return 1;
}

/*
 * After an error: leaves [error object, traceback] on t->co, with the
 * coroutine closed so its <close> variables have run. When the memory cap is
 * what failed, the traceback may not fit: the message goes without it, once
 * the coroutine's memory is freed.
 */
static void collect_error(struct rill_task *t)
{
    lua_State *L = t->w->L, *co = t->co;
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1); /* L: errobj */
    lua_pushcfunction(L, describe_error);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushvalue(L, -3);
    int described = lua_pcall(L, 2, 1, 0) == LUA_OK; /* L: errobj traceback|error */
    close_coroutine(t, 1);
    if (!described) {
        lua_pop(L, 1);
        const char *msg = lua_tostring(L, -1);
        lua_pushfstring(L, "%s (no traceback: out of memory)", msg ? msg : "error");
    }
    lua_xmove(L, co, 2);
}

static int yield_is_effect(lua_State *co, int nres)
{
    return nres >= 1 && lua_touserdata(co, -nres) == &effect_tag;
}

/* One lua_resume of t->co, inside the budget and the memory cap. */
static int resume_once(struct rill_task *t, int nargs, int *nres)
{
    struct rill_worker *w = t->w;
    int capped = rill_worker_enforce_memory_cap(1);
    lua_State *outer_co = rill_worker_enter(t->co);
    t->over_budget = 0;
    int status = lua_resume(t->co, w->L, nargs, nres);
    if (status == LUA_ERRMEM)
        RILL_METRIC_ADD(memory_stops, 1); /* the cap (--max-lua-memory), as a rule */
    else if (status != LUA_OK && status != LUA_YIELD && t->over_budget)
        RILL_METRIC_ADD(budget_stops, 1); /* the handler ended by the budget, once */
    /*
     * An error that ends a resume may leave the coroutine's hooks off (Lua
     * clears allowhook while the budget's count hook runs, and nothing sets
     * it back when the hook's error unwinds the whole coroutine): pooled, the
     * next task would have no budget. Whichever way the task then ends.
     */
    if (status != LUA_OK && status != LUA_YIELD)
        t->spoiled = 1;
    rill_worker_leave(t->co, outer_co);
    rill_worker_enforce_memory_cap(capped);
    return status;
}

/* A driven coroutine returned *nres values: the first goes as its last (waiting for none). */
static int returned(struct rill_task *t, int *nres)
{
    enum rill_step step = t->yielded(t, *nres);
    if (step == RILL_STEP_WAIT) /* for the client to read: nothing is left to resume */
        run_cancel_hook(t);
    *nres = step == RILL_STEP_FAIL; /* its message is on t->co */
    return step == RILL_STEP_FAIL ? LUA_ERRRUN : LUA_OK;
}

/*
 * Resumes t->co until it waits or ends. A driven coroutine's own yields
 * (t->yielded) are taken in this loop, not by resuming from the callback, so
 * a generator that yields a million chunks uses no C stack; the budget counts
 * across them, as it did when a Lua loop took them. *waits: it now waits.
 */
static int run(struct rill_task *t, int nargs, int *nres, int *waits)
{
    for (;;) {
        int status = resume_once(t, nargs, nres);
        *waits = status == LUA_YIELD && yield_is_effect(t->co, *nres);
        if (status == LUA_OK && t->yielded && *nres > 0 && !t->closing)
            return returned(t, nres); /* what it returned is its last value */
        if (*waits || status != LUA_YIELD || !t->yielded || t->closing)
            return status;
        switch (t->yielded(t, *nres)) { /* the values are gone from t->co after it */
        case RILL_STEP_NEXT:
            if (t->closing) { /* cancelled meanwhile: the caller closes it */
                *nres = 0;
                *waits = 1;
                return LUA_YIELD;
            }
            nargs = 0;
            continue;
        case RILL_STEP_WAIT:
            *nres = 0;
            *waits = 1;
            return LUA_YIELD;
        case RILL_STEP_END:
            close_coroutine(t, 0); /* its <close> variables run, as at a for loop's end */
            *nres = 0;
            return LUA_OK;
        default: *nres = 1; return LUA_ERRRUN; /* its message is on t->co */
        }
    }
}

int rill_task_resume(struct rill_task *t, int nargs)
{
    struct rill_worker *w = t->w;
    struct rill_task *outer = w->current;
    int nres = 0, waits;

    struct rill_resume_link *outer_resumed = w->resumed;
    t->cancel = NULL;
    t->instructions = 0; /* the budget is per resume */
    w->current = t;
    w->resumed = NULL; /* the chain of this task's own resumes */
    t->running = 1;
    w->resumes++; /* once for all of a driven coroutine's chunks (on evhttp: one write) */
    int status = run(t, nargs, &nres, &waits);
    t->running = 0;
    w->current = outer;
    w->resumed = outer_resumed;

    if (waits) {
        lua_pop(t->co, nres);
        if (!t->closing)
            return 1;
        rill_task_cancel(t);
        t->done(t, RILL_CANCELLED, 0);
        return 0;
    }
    if (status == LUA_YIELD) { /* a bare coroutine.yield at the top of a handler */
        lua_pop(t->co, nres);
        lua_pushliteral(t->co, "attempt to yield from a handler (use coroutine.wrap for "
                               "generators; rill effects yield by themselves)");
        status = LUA_ERRRUN;
    }
    if (t->closing) {
        close_coroutine(t, 0);
        t->done(t, RILL_CANCELLED, 0);
        return 0;
    }
    if (status != LUA_OK) {
        collect_error(t);
        nres = 2;
    }
    t->done(t, status, nres);
    return 0;
}

void rill_thread_drop(struct rill_worker *w, int ref)
{
    lua_State *L = w->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* anchored while its <close> handlers run */
    lua_State *co = lua_tothread(L, -1);
    if (co && rill_closethread(co, L) != LUA_OK) {
        const char *msg = lua_tostring(co, -1);
        rill_log_at(RILL_LOG_ERROR, "error while closing a generator: %s",
                    msg ? msg : "(not a string)");
        lua_settop(co, 0);
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void rill_task_adopt(struct rill_task *t, int ref)
{
    struct rill_worker *w = t->w;
    lua_settop(t->co, 0);
    if (lua_status(t->co) == LUA_OK && !t->spoiled && w->npool < RILL_THREAD_POOL)
        w->pool[w->npool++] = t->ref;
    else
        luaL_unref(w->L, LUA_REGISTRYINDEX, t->ref);
    lua_rawgeti(w->L, LUA_REGISTRYINDEX, ref);
    t->co = lua_tothread(w->L, -1);
    lua_pop(w->L, 1);
    t->ref = ref;
    t->spoiled = 1; /* the app's coroutine: its owner may still hold it, so it is never pooled */
}

struct rill_task *rill_task_check(lua_State *L)
{
    struct rill_worker *w = rill_worker_get(L);
    if (!w->current)
        luaL_error(L, "rill effects can only be used inside a request handler or rill.run");
    return w->current;
}

/* What keeps co from yielding, for the error: the nearest metamethod or C function. */
static const char *blocker(lua_State *L, lua_State *co)
{
    lua_Debug ar;
    for (int level = co == L ? 1 : 0; lua_getstack(co, level, &ar); level++) {
        lua_getinfo(co, "Sn", &ar);
        if (ar.namewhat && strcmp(ar.namewhat, "metamethod") == 0)
            return lua_pushfstring(L, "a __%s metamethod", ar.name ? ar.name : "?");
        if (strcmp(ar.what, "C") == 0 && ar.name)
            return lua_pushfstring(L, "'%s'", ar.name);
        if (strcmp(ar.what, "C") == 0)
            return "a C function";
    }
    return "a __gc metamethod or a C function";
}

static int cannot_wait(lua_State *L, lua_State *co, const char *what, const char *where, int level)
{
    if (!what) {
        lua_Debug ar;
        what = lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name
                   ? lua_pushfstring(L, "'%s'", ar.name)
                   : "this rill call";
    }
    luaL_where(L, level);
    lua_pushfstring(L,
                    "%s cannot run inside %s, which Lua cannot yield across (a sort "
                    "comparator, a gsub callback, a metamethod, require...): call it from "
                    "the handler or a coroutine.wrap generator",
                    what, where ? where : blocker(L, co));
    lua_concat(L, 2);
    return lua_error(L);
}

/*
 * An effect's yield goes from L up to its task's coroutine, through each
 * coroutine rill's resume started on the way (worker->resumed): every one of
 * them must be able to yield, or the yield fails after the effect armed its
 * timer or waiter, leaving it armed for a coroutine that is not waiting.
 */
struct rill_task *rill_task_check_wait_at(lua_State *L, const char *what, int level)
{
    struct rill_task *t = rill_task_check(L);
    const struct rill_resume_link *link = t->w->resumed;
    for (lua_State *co = L;; co = link->from, link = link->outer) {
        if (!lua_isyieldable(co))
            cannot_wait(L, co, what, NULL, level);
        if (co == t->co) {
            t->effect = what ? what : "an effect";
            return t;
        }
        if (!link || link->co != co)
            cannot_wait(L, co, what, "a coroutine that rill's coroutine.resume did not start",
                        level);
    }
}

struct rill_task *rill_task_check_wait(lua_State *L, const char *what)
{
    return rill_task_check_wait_at(L, what, 1);
}

int rill_task_wait(lua_State *L, struct rill_task *t, rill_cancel_fn cancel)
{
    return rill_task_waitk(L, t, cancel, 0, NULL);
}

int rill_task_waitk(lua_State *L, struct rill_task *t, rill_cancel_fn cancel, lua_KContext ctx,
                    lua_KFunction k)
{
    t->cancel = cancel;
    lua_pushlightuserdata(L, &effect_tag);
    return lua_yieldk(L, 1, ctx, k);
}

void rill_timer_add(struct event *ev, double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
    evtimer_add(ev, &tv);
}

static void on_waiter(evutil_socket_t fd, short what, void *arg)
{
    struct rill_waiter *w = arg;
    struct rill_task *t = w->task;
    (void)fd, (void)what;
    if (t) {
        w->task = NULL;
        rill_task_resume(t, 0);
    } else if (w->unwaited) {
        w->unwaited(w);
    }
}

void rill_waiter_init(struct rill_waiter *w, struct event_base *base,
                      void (*unwaited)(struct rill_waiter *w))
{
    w->task = NULL;
    w->unwaited = unwaited;
    event_assign(&w->ev, base, -1, 0, on_waiter, w);
}

static void waiter_cancel(struct rill_task *t)
{
    struct rill_waiter *w = t->wait_arg;
    if (w && w->task == t)
        w->task = NULL;
}

int rill_waiter_park(lua_State *L, struct rill_waiter *w, lua_KFunction k, const char *what)
{
    struct rill_task *t = rill_task_check_wait(L, what);
    if (w->task && w->task != t)
        return luaL_error(L, "another handler is already waiting on this object");
    w->task = t;
    t->wait_arg = w;
    return rill_task_waitk(L, t, waiter_cancel, 0, k);
}

void rill_waiter_wake(struct rill_waiter *w)
{
    if (w->task)
        event_active(&w->ev, EV_TIMEOUT, 1);
}

void rill_waiter_poke(struct rill_waiter *w)
{
    event_active(&w->ev, EV_TIMEOUT, 1);
}

void rill_waiter_clear(struct rill_waiter *w)
{
    event_del(&w->ev);
    w->task = NULL;
}
