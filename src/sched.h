/* SPDX-License-Identifier: MIT */
#ifndef RILL_SCHED_H
#define RILL_SCHED_H
#include <event2/event.h>
#include <event2/event_struct.h>
#include <lua.h>

#include "worker.h"

struct rill_task;
typedef void (*rill_cancel_fn)(struct rill_task *t);

/*
 * Something a task opened (an upstream fetch, ...): closed when the task ends
 * if the handler did not close it, so nothing outlives its request.
 */
struct rill_resource {
    void (*close)(struct rill_resource *res);
    struct rill_resource *prev, *next;
    struct rill_task *owner;
};

/*
 * Ending of a task. status is LUA_OK (nres results on t->co), an error status
 * (t->co holds the error object and a traceback string), or RILL_CANCELLED.
 * The owner may free t inside it.
 */
#define RILL_CANCELLED (-1)
typedef void (*rill_done_fn)(struct rill_task *t, int status, int nres);

/* What a driven coroutine's own yield (not an effect's) leads to: see rill_task.yielded. */
enum rill_step {
    RILL_STEP_NEXT, /* resume it again at once */
    RILL_STEP_WAIT, /* it waits: the callback armed something that resumes it (t->cancel set) */
    RILL_STEP_END,  /* it is done: closed, and the task ends as if it returned */
    RILL_STEP_FAIL  /* the task ends with the error message the callback pushed on t->co */
};

/* A coroutine driven by the event loop: a request's handler, or rill.run's function. */
struct rill_task {
    struct rill_worker *w;
    lua_State *co;
    int ref;                /* registry ref anchoring co */
    rill_cancel_fn cancel;  /* undoes the pending effect, if any */
    void *wait_arg;         /* what the pending effect waits on, for cancel */
    long long instructions; /* run since the last resume (the budget's count) */
    rill_done_fn done;
    /* ends the task's request uncleanly (server.c): slow, the hub's queue policy; else
     * hub.disconnect */
    void (*abort)(struct rill_task *t, int slow);
    /* a driven coroutine's own yields (nres values on t->co, for it to pop); NULL: an error */
    enum rill_step (*yielded)(struct rill_task *t, int nres);
    struct rill_resource *resources;
    struct event *timer; /* rill.sleep's, made on its first call (most tasks never sleep) */
    const char *effect;  /* what it waits on ("rill.fetch"), while cancel is set; static */
    unsigned running : 1;
    unsigned closing : 1;          /* cancel asked for while running */
    unsigned owner_is_request : 1; /* the task is a struct rill_request */
    unsigned over_budget : 1;      /* this resume hit --max-instructions (counted once) */
    unsigned
        spoiled : 1; /* its coroutine was closed while suspended: not pooled (close_coroutine) */
};

void rill_task_init(struct rill_task *t, struct rill_worker *w, rill_done_fn done);
/* Gives the task a coroutine (from the pool when possible). */
lua_State *rill_task_open(struct rill_task *t);
/*
 * Resumes t->co with nargs values on its stack (a function and its arguments
 * the first time). Returns 1 if the task now waits on an effect, 0 if it ended
 * (done was called and t may be gone).
 */
int rill_task_resume(struct rill_task *t, int nargs);
/* Closes the coroutine (its <close> variables run) and undoes the pending effect. */
void rill_task_cancel(struct rill_task *t);
/*
 * t's coroutine has returned: t goes on as the app's coroutine anchored by
 * ref (from its start or its last yield), whose yields t->yielded takes. The
 * old one goes back to the pool; what t opened stays open, as t goes on.
 */
void rill_task_adopt(struct rill_task *t, int ref);
/* Closes the coroutine anchored by ref (its <close> variables run) and lets it go. */
void rill_thread_drop(struct rill_worker *w, int ref);
/* Gives the coroutine back (to the pool). */
void rill_task_release(struct rill_task *t);

/* The task the calling code runs in; raises when outside a handler or rill.run. */
struct rill_task *rill_task_check(lua_State *L);
/*
 * The same, for an effect about to wait: raises, before the effect arms
 * anything, when its yield could not reach the task (a table.sort
 * comparator, a gsub callback, a metamethod, require, or a coroutine that
 * rill's coroutine.resume did not start, anywhere on the way up). what
 * names the effect in the error ("rill.sleep"; NULL: the called function).
 */
struct rill_task *rill_task_check_wait(lua_State *L, const char *what);
/* The same, its error naming the position of the caller at level (luaL_where). */
struct rill_task *rill_task_check_wait_at(lua_State *L, const char *what, int level);
/* For an effect: parks the caller until a callback resumes t. Use as `return rill_task_wait(...)`.
 */
int rill_task_wait(lua_State *L, struct rill_task *t, rill_cancel_fn cancel);
/* The same, continuing in k (with the caller's stack kept) when a callback resumes t. */
int rill_task_waitk(lua_State *L, struct rill_task *t, rill_cancel_fn cancel, lua_KContext ctx,
                    lua_KFunction k);
/* Links res to t (closed at the latest when t is released); unlinks it. */
void rill_resource_add(struct rill_task *t, struct rill_resource *res);
void rill_resource_remove(struct rill_resource *res);
/* The tag effects yield: user coroutines pass it through (lua/rill/coroutine.lua). */
void *rill_effect_tag(void);

void rill_timer_add(struct event *ev, double seconds);

/*
 * Where one task waits for news from a callback (an upstream's bytes, a
 * published event, an appended line). The news wakes it from an event of its
 * own, never from inside the callback that brought it (which may be in the
 * middle of a parse, or in another handler), and news arriving together makes
 * one wake-up.
 */
struct rill_waiter {
    struct event ev;
    struct rill_task *task;                  /* waiting, or NULL */
    void (*unwaited)(struct rill_waiter *w); /* poked with nobody waiting (may be NULL) */
};

void rill_waiter_init(struct rill_waiter *w, struct event_base *base,
                      void (*unwaited)(struct rill_waiter *w));
/*
 * Parks the running task on w, to continue in k. Raises if another task
 * waits there, or where the task cannot yield (what names the effect).
 */
int rill_waiter_park(lua_State *L, struct rill_waiter *w, lua_KFunction k, const char *what);
/* News for the waiting task, if there is one. */
void rill_waiter_wake(struct rill_waiter *w);
/* News that must be handled even with nobody waiting (then unwaited runs). */
void rill_waiter_poke(struct rill_waiter *w);
void rill_waiter_clear(struct rill_waiter *w);

#endif
