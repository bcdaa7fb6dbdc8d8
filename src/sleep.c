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

/*
 * One task asleep on the fake clock: a list by deadline, ties in the order
 * they slept. seq tells a sleeper from those that slept after a wake began:
 * they wake in the next round, not in the same loop.
 */
struct sleeper {
    struct rill_task *t;
    double at;
    unsigned long seq;
    struct sleeper *next;
};

static struct {
    int on;
    double start;      /* real monotonic seconds when it was turned on */
    double now;        /* virtual seconds since then */
    double offset;     /* added to real time once it is off, so rill.now never goes back */
    unsigned long seq; /* sleeps so far */
    int spun;          /* the wakes at spun_at ran out of rounds (wake_instant) */
    double spun_at;
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
    return vc.on ? vc.start + vc.now : real_now() + vc.offset;
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
    n->seq = vc.seq++;
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

/* The first sleeper due by vc.now that slept before seq `before`, unlinked; or NULL. */
static struct sleeper *take_due(unsigned long before)
{
    for (struct sleeper **p = &vc.asleep; *p && (*p)->at <= vc.now; p = &(*p)->next)
        if ((*p)->seq < before) {
            struct sleeper *s = *p;
            *p = s->next;
            return s;
        }
    return NULL;
}

/*
 * Wakes, in order, each sleeper due by vc.now that slept before this call:
 * one that sleeps again (even for 0 s) waits for the next wake, so a task
 * polling with rill.sleep(0) cannot keep this loop going.
 */
static int wake_due(void)
{
    unsigned long before = vc.seq;
    int n = 0;
    for (struct sleeper *s; (s = take_due(before)) != NULL; n++) {
        struct rill_task *t = s->t;
        free(s);
        t->cancel = NULL; /* it is no longer asleep: a cancel now has nothing to undo */
        rill_task_resume(t, 0);
    }
    return n;
}

static int any_due(void)
{
    return vc.asleep && vc.asleep->at <= vc.now;
}

/*
 * Wakes the sleepers due at this instant, and those that slept again with
 * no duration (rill.every's next run after a long one), round after round,
 * but at most ROUNDS: a task that polls with rill.sleep(0) gets that many
 * turns, then time moves (vc.spun says so to rill_clock_step).
 */
#define ROUNDS 64
static int wake_instant(void)
{
    int n = 0, woke, rounds = 0;
    do {
        woke = wake_due();
        n += woke;
    } while (woke > 0 && vc.on && any_due() && ++rounds < ROUNDS);
    vc.spun = vc.on && any_due() && rounds >= ROUNDS;
    vc.spun_at = vc.now;
    return n;
}

/* The wakes at this very instant ran out of rounds: only pollers are due. */
static int spun_now(void)
{
    return vc.spun && vc.spun_at == vc.now;
}

/* The soonest deadline after vc.now, or -1 when no sleeper has one. */
static double next_later(void)
{
    for (struct sleeper *s = vc.asleep; s; s = s->next)
        if (s->at > vc.now)
            return s->at;
    return -1;
}

/*
 * One step of virtual time, for a loop with nothing else to do: the
 * sleepers due now wake (wake_instant); when none is due, or only tasks
 * that kept sleeping 0 s past their rounds, time first moves on to the
 * next deadline, so they do not hold it still. How many woke.
 */
int rill_clock_step(void)
{
    if (!vc.on || !vc.asleep)
        return 0;
    double later = next_later();
    if ((!any_due() || spun_now()) && later >= 0)
        vc.now = later;
    return wake_instant();
}

int rill_clock_waiting(void)
{
    return vc.on && vc.asleep != NULL;
}

/*
 * Back to real time: each sleeper gets a timer for what it had left. The
 * list is taken first (and the clock is off), so a task woken here early
 * (out of memory for its timer) sleeps on real time.
 */
static void clock_off(void)
{
    vc.on = 0; /* a task woken early below sleeps on real time */
    vc.spun = 0;
    double then = real_now() + vc.offset; /* what rill.now says once the clock is off */
    if (vc.start + vc.now > then)
        vc.offset += vc.start + vc.now - then;
    /* one at a time off the list: Lua a wake runs may cancel the others (fake_cancel) */
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
}

/* core.clock_fake(on): the fake clock on (from 0) or off; from outside any task. */
static int core_clock_fake(lua_State *L)
{
    int on = lua_toboolean(L, 1);
    if (rill_worker_get(L)->current)
        return luaL_error(L, "the fake clock is turned on and off by the spec, not from a task");
    if (on && vc.on)
        return luaL_error(L, "a fake clock is already on: stop it first");
    if (on) {
        vc.on = 1;
        vc.start = real_now() + vc.offset;
        vc.now = 0;
        vc.spun = 0;
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

/*
 * core.clock_advance(s) → how many sleepers woke: time moves to each
 * deadline on the way in turn, waking the sleepers due there (each once per
 * instant), and ends s later than it began.
 */
static int core_clock_advance(lua_State *L)
{
    double s = rill_check_range(L, 1, 0, RILL_MAX_SECONDS);
    if (!vc.on)
        return luaL_error(L, "no fake clock is on");
    if (rill_worker_get(L)->current)
        return luaL_error(L, "the clock is advanced by the spec, not from inside a task");
    double target = vc.now + s;
    int n = wake_instant();
    for (double next; vc.on && (next = next_later()) >= 0 && next <= target;) {
        vc.now = next;
        n += wake_instant();
    }
    if (vc.on && vc.now < target) {
        vc.now = target;
        n += wake_instant();
    }
    lua_pushinteger(L, n);
    return 1;
}

/*
 * core.clock_next() → seconds until the clock's next step would move it: 0
 * while sleepers are due (but for pollers out of rounds), else to the next
 * deadline; nil: none asleep, or no clock.
 */
static int core_clock_next(lua_State *L)
{
    if (!vc.on || !vc.asleep)
        return 0;
    double later = next_later();
    if (any_due() && (!spun_now() || later < 0))
        lua_pushnumber(L, 0);
    else
        lua_pushnumber(L, later - vc.now);
    return 1;
}

/* core.clock_step() → how many woke: one step, as rill.run takes when idle (rill.test's drive). */
static int core_clock_step(lua_State *L)
{
    if (rill_worker_get(L)->current)
        return luaL_error(L, "the clock is stepped by the spec, not from inside a task");
    lua_pushinteger(L, rill_clock_step());
    return 1;
}

static const luaL_Reg sleep_funcs[] = {
    {"sleep", sleep_call},
    {"clock_fake", core_clock_fake},
    {"clock_now", core_clock_now},
    {"clock_advance", core_clock_advance},
    {"clock_next", core_clock_next},
    {"clock_step", core_clock_step},
    {NULL, NULL},
};

void rill_open_sleep(lua_State *L)
{
    luaL_setfuncs(L, sleep_funcs, 0);
}
