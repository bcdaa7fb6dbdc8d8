/* SPDX-License-Identifier: MIT */
/* rill.sleep(seconds): the first effect, and the model for the others. */
#include <lauxlib.h>
#include <math.h>

#include "effects.h"
#include "luanum.h"
#include "sched.h"

static void on_sleep_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    rill_task_resume(arg, 0);
}

static void sleep_cancel(struct rill_task *t)
{
    evtimer_del(t->timer);
}

/* rill.sleep(s): parks the calling coroutine on a timer. */
static int sleep_call(lua_State *L)
{
    double s = rill_check_range(L, 1, 0, RILL_MAX_SECONDS);
    struct rill_task *t = rill_task_check_wait(L, "rill.sleep"); /* before arming anything */

    if (!t->timer && !(t->timer = evtimer_new(t->w->base, on_sleep_done, t)))
        return luaL_error(L, "out of memory"); /* nothing armed */
    rill_timer_add(t->timer, s);
    return rill_task_wait(L, t, sleep_cancel); /* sleep_cancel runs if the client leaves first */
}

static const luaL_Reg sleep_funcs[] = {
    {"sleep", sleep_call},
    {NULL, NULL},
};

void rill_open_sleep(lua_State *L)
{
    luaL_setfuncs(L, sleep_funcs, 0);
}
