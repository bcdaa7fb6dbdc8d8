/* SPDX-License-Identifier: MIT */
#ifndef RILL_WORKER_H
#define RILL_WORKER_H
#include <event2/event.h>
#include <event2/buffer.h>
#include <lua.h>

struct rill_task;
struct rill_server;

#define RILL_THREAD_POOL 256 /* finished coroutines kept for reuse */

struct rill_stats {
    long requests; /* handled since start */
    long errors;   /* handler errors */
    int tasks;     /* live coroutines (requests and rill.run) */
    int streams;   /* responses streaming right now */
    int blocked;   /* of which waiting for a slow client to read */
};

/*
 * A coroutine that rill's coroutine.resume (core.c) is running, and the one
 * that resumed it: the chain an effect's yield travels up to its task.
 */
struct rill_resume_link {
    lua_State *co, *from;
    struct rill_resume_link *outer;
};

/*
 * One event loop and one Lua state: the unit of concurrency. The rill executable
 * has exactly one per process; the rill.core module makes one on first use.
 */
struct rill_worker {
    struct event_base *base;
    lua_State *L;                     /* the main thread */
    struct rill_task *current;        /* the task being resumed, if any */
    struct rill_resume_link *resumed; /* its coroutines rill's resume runs now, innermost first */
    struct rill_server *server;
    struct evbuffer *scratch; /* reused to hand bytes to evhttp */
    struct rill_stats stats;
    unsigned long resumes;      /* counts task resumes: tells one resume from the next */
    int pool[RILL_THREAD_POOL]; /* registry refs of idle coroutines */
    int npool;
    long long max_instructions;        /* per resume of a task; 0: no budget */
    lua_CFunction xpcall_fn, pcall_fn; /* the base library's, as the app found them (sched.c) */
};

/* The worker of this process, created with L on first call. */
struct rill_worker *rill_worker_get(lua_State *L);
/* A Lua state whose allocations count against the worker's memory cap. */
lua_State *rill_worker_newstate(void);
/* The cap of states made by rill_worker_newstate (0: none), and what they hold. */
void rill_worker_set_memory_cap(size_t bytes);
size_t rill_worker_memory(void);
/* Turns the cap on (while a task runs) or off; returns the previous setting. */
int rill_worker_enforce_memory_cap(int on);
/* Stops a handler that runs too long without yielding (a count hook, armed by a CPU tick). */
void rill_worker_set_budget(lua_State *L, long long instructions);
/* Lua code runs in co until rill_worker_leave (around each lua_resume): the budget's
   tick arms its hook on co. enter returns what ran before, for leave to restore. */
lua_State *rill_worker_enter(lua_State *co);
void rill_worker_leave(lua_State *co, lua_State *outer);
void rill_worker_free(void);

#endif
