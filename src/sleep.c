/* SPDX-License-Identifier: MIT */
/*
 * rill.sleep(seconds): the first effect, and the model for the others.
 *
 * And the fake clock of rill.test.clock(): while it is on, a sleep waits on
 * virtual time instead of a timer. Virtual time moves only when told
 * (rill.core.clock_advance) or, inside rill.run, when nothing else is ready
 * (clock_step: straight to the next sleeper's deadline), so a spec of a
 * handler that sleeps a minute between events runs in milliseconds, in an
 * order that never depends on the machine. rill.now() follows it.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "effects.h"
#include "luanum.h"
#include "sched.h"

/* One task asleep on the fake clock: a list by deadline, ties in the order they slept. */
struct sleeper {
    struct rill_task *t;
    double at;
    struct sleeper *next;
};

static struct {
    int on;
    double start;           /* real monotonic seconds when it was turned on */
    double now;             /* virtual seconds since then */
    struct sleeper *asleep; /* the soonest first */
} vc;

static double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double rill_clock_now(void)
{
    return vc.on ? vc.start + vc.now : real_now();
}

static void on_sleep_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    rill_task_resume(arg, 0);
}

static void sleep_cancel(struct rill_task *t)
{
    evtimer_del(t->timer);
}

static void fake_cancel(struct rill_task *t)
{
    for (struct sleeper **p = &vc.asleep; *p; p = &(*p)->next)
        if ((*p)->t == t) {
            struct sleeper *s = *p;
            *p = s->next;
            free(s);
            return;
        }
}

/* t asleep until now + s on the fake clock; -1 if out of memory (nothing armed). */
static int fake_sleep(struct rill_task *t, double s)
{
    struct sleeper *n = malloc(sizeof *n);
    if (!n)
        return -1;
    n->t = t;
    n->at = vc.now + s;
    struct sleeper **p = &vc.asleep;
    while (*p && (*p)->at <= n->at) /* after those due at the same time: they slept first */
        p = &(*p)->next;
    n->next = *p;
    *p = n;
    return 0;
}

/* rill.sleep(s): parks the calling coroutine on a timer (or the fake clock). */
static int sleep_call(lua_State *L)
{
    double s = rill_check_range(L, 1, 0, RILL_MAX_SECONDS);
    struct rill_task *t = rill_task_check_wait(L, "rill.sleep"); /* before arming anything */

    if (vc.on) {
        if (fake_sleep(t, s) != 0)
            return luaL_error(L, "out of memory");
        return rill_task_wait(L, t, fake_cancel);
    }
    if (!t->timer && !(t->timer = evtimer_new(t->w->base, on_sleep_done, t)))
        return luaL_error(L, "out of memory"); /* nothing armed */
    rill_timer_add(t->timer, s);
    return rill_task_wait(L, t, sleep_cancel); /* sleep_cancel runs if the client leaves first */
}

/* Wakes every sleeper due by vc.now, in order (one woken may sleep again, due now too). */
static int wake_due(void)
{
    int n = 0;
    while (vc.asleep && vc.asleep->at <= vc.now) {
        struct sleeper *s = vc.asleep;
        struct rill_task *t = s->t;
        vc.asleep = s->next;
        free(s);
        t->cancel = NULL; /* it is no longer asleep: a cancel now has nothing to undo */
        rill_task_resume(t, 0);
        n++;
    }
    return n;
}

int rill_clock_step(void)
{
    if (!vc.on || !vc.asleep)
        return 0;
    if (vc.asleep->at > vc.now)
        vc.now = vc.asleep->at;
    return wake_due();
}

/* Back to real time: each sleeper gets a timer for what it had left. */
static void clock_off(void)
{
    while (vc.asleep) {
        struct sleeper *s = vc.asleep;
        struct rill_task *t = s->t;
        vc.asleep = s->next;
        double left = s->at > vc.now ? s->at - vc.now : 0;
        free(s);
        if (!t->timer)
            t->timer = evtimer_new(t->w->base, on_sleep_done, t);
        if (t->timer) {
            rill_timer_add(t->timer, left);
            t->cancel = sleep_cancel;
        } else {
            t->cancel = NULL;
            rill_task_resume(t, 0); /* out of memory: it wakes early rather than never */
        }
    }
    vc.on = 0;
}

/* core.clock_fake(on): the fake clock on (from 0) or off. */
static int core_clock_fake(lua_State *L)
{
    int on = lua_toboolean(L, 1);
    if (on && vc.on)
        return luaL_error(L, "a fake clock is already on: stop it first");
    if (on) {
        vc.on = 1;
        vc.start = real_now();
        vc.now = 0;
    } else if (vc.on) {
        clock_off();
    }
    return 0;
}

/* core.clock_now() → virtual seconds since the fake clock went on (nil: it is off). */
static int core_clock_now(lua_State *L)
{
    if (!vc.on)
        return 0;
    lua_pushnumber(L, vc.now);
    return 1;
}

/* core.clock_advance(s) → how many sleepers woke: time moves s, waking each due, in order. */
static int core_clock_advance(lua_State *L)
{
    double s = rill_check_range(L, 1, 0, RILL_MAX_SECONDS);
    if (!vc.on)
        return luaL_error(L, "no fake clock is on");
    if (rill_worker_get(L)->current)
        return luaL_error(L, "the clock is advanced by the spec, not from inside a task");
    double target = vc.now + s;
    int n = 0;
    while (vc.asleep && vc.asleep->at <= target) {
        if (vc.asleep->at > vc.now)
            vc.now = vc.asleep->at;
        n += wake_due();
    }
    vc.now = target;
    lua_pushinteger(L, n + wake_due());
    return 1;
}

/* core.clock_next() → seconds to the next sleeper's deadline (nil: none asleep, or no clock). */
static int core_clock_next(lua_State *L)
{
    if (!vc.on || !vc.asleep)
        return 0;
    lua_pushnumber(L, vc.asleep->at - vc.now);
    return 1;
}

static const luaL_Reg sleep_funcs[] = {
    {"sleep", sleep_call},           {"clock_fake", core_clock_fake},
    {"clock_now", core_clock_now},   {"clock_advance", core_clock_advance},
    {"clock_next", core_clock_next}, {NULL, NULL},
};

void rill_open_sleep(lua_State *L)
{
    luaL_setfuncs(L, sleep_funcs, 0);
}
