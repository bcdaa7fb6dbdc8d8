/* SPDX-License-Identifier: MIT */
#include "worker.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

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

void rill_worker_free(void)
{
    if (!worker)
        return;
    evbuffer_free(worker->scratch);
    event_base_free(worker->base);
    free(worker);
    worker = NULL;
}
