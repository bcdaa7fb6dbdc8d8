/* SPDX-License-Identifier: MIT */
/*
 * rill.tail(path, opts): the lines of a growing file, as an effect.
 *
 * src/tailer.c follows the file by name (tail -F); this file makes it a Lua
 * iterator. One inotify descriptor per worker serves every tail: watches are
 * per inode, so tails of one file share one watch, and an event wakes the
 * tails whose file or directory it names. A stat poll backs inotify up
 * (filesystems where it does not fire, a full event queue) or replaces it
 * (opts.poll). Paths are confined to the tail roots (--tail-root): checked
 * by name when the tail starts, and by the opened descriptor's real path on
 * every open (tailer.c), so a file that appears later, a rotation or a
 * symlink swapped in cannot lead outside them. A relative path is taken
 * from the app's directory, never from the process's working directory.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "effects.h"
#include "luanum.h"
#include "metrics.h"
#include "sched.h"
#include "tailer.h"

#define TAIL_MT     "rill.tail"
#define READ_CHUNK  (64 * 1024)
#define MAX_ROOTS   16
#define MAX_LINE    (64 * 1024 * 1024) /* the largest max_line accepted */
#define MAX_FROM    1000000            /* the largest from = N (lines) accepted */
#define MAX_SCAN    (1024 * 1024)      /* from = N looks back at most this many bytes */
#define MAX_POLL    3600.0             /* seconds */
#define FILE_EVENTS (IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF | IN_CLOSE_WRITE)
#define DIR_EVENTS  (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)

struct tail {
    struct rill_resource res; /* first member */
    struct rill_worker *w;
    struct rill_follow follow;
    struct evbuffer *pending; /* read, not yet returned as lines */
    off_t pending_at;         /* file offset of pending's first byte */
    int file_wd, dir_wd;
    char name[NAME_MAX + 1];  /* the file's name in its directory */
    struct tail *prev, *next; /* the worker's tails, for inotify */
    struct event poll_timer;
    double poll_every;
    int polling_only;
    struct rill_waiter wait;
    size_t max_line;
    int strip;
    const char *notice; /* an in-band notice owed to an event reader, or NULL */
    int open;
};

static struct tail *tails;
static int ntails; /* of them */

int rill_tail_count(void)
{
    return ntails;
}
static int inotify_fd = -1;
static struct event *inotify_ev;
static char roots[MAX_ROOTS][PATH_MAX];
static int nroots;
static char app_dir[PATH_MAX]; /* what a relative path is taken from */
static int app_dir_set;

/* ---- roots ---------------------------------------------------------------------- */

int rill_tail_add_root(const char *dir)
{
    if (nroots == MAX_ROOTS || !realpath(dir, roots[nroots]))
        return -1;
    nroots++;
    return 0;
}

/*
 * The app's directory: relative paths are taken from it, and without an
 * explicit --tail-root (as_root) it is the root. Not when it is `/`: an app
 * at the top of the filesystem would open all of it to tails, so that takes
 * an explicit --tail-root /.
 */
int rill_tail_app_dir(const char *dir, int as_root)
{
    if (!realpath(dir, app_dir))
        return -1;
    app_dir_set = 1;
    if (as_root && strcmp(app_dir, "/") != 0)
        return rill_tail_add_root(app_dir);
    return 0;
}

/*
 * The real path (symlinks and .. resolved) of a file that may not exist
 * yet (then its directory must), or NULL with err set.
 */
static char *resolve(const char *path, char *out, const char **err)
{
    if (realpath(path, out))
        return out;
    char copy[PATH_MAX], dir[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    const char *base = basename(copy);
    snprintf(dir, sizeof dir, "%s", path);
    if (!realpath(dirname(dir), out)) {
        *err = "its directory does not exist";
        return NULL;
    }
    if (strcmp(base, "..") == 0 || strcmp(base, ".") == 0 ||
        strlen(out) + strlen(base) + 2 > PATH_MAX) {
        *err = "not a file name";
        return NULL;
    }
    strcat(out, "/");
    strcat(out, base);
    return out;
}

/* path, or app_dir/path when relative, into out; NULL if too long. */
static char *absolute(const char *path, char *out, size_t cap)
{
    int n = path[0] == '/' ? snprintf(out, cap, "%s", path)
                           : snprintf(out, cap, "%s/%s", app_dir, path);
    return n < 0 || (size_t)n >= cap ? NULL : out;
}

char *rill_app_path(const char *path, char *out, size_t cap)
{
    if (!app_dir_set)
        rill_tail_app_dir(".", 1); /* under rill.run: the current directory */
    return absolute(path, out, cap);
}

static int under_a_root(const char *real)
{
    for (int i = 0; i < nroots; i++) {
        size_t n = strlen(roots[i]);
        if (strncmp(real, roots[i], n) == 0 && (real[n] == '/' || (n == 1 && real[0] == '/')))
            return 1;
    }
    return 0;
}

void rill_tail_shutdown(void)
{
    if (inotify_ev)
        event_free(inotify_ev);
    inotify_ev = NULL;
    if (inotify_fd >= 0)
        close(inotify_fd);
    inotify_fd = -1;
}

/* ---- waking --------------------------------------------------------------------- */

static void wake(struct tail *t)
{
    rill_waiter_wake(&t->wait);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    wake(arg);
}

/* The inotify queue: wake the tails each event concerns. */
static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    (void)what, (void)arg;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            for (struct tail *t = tails; t; t = t->next) {
                int mine = ev->wd == t->file_wd ||
                           (ev->wd == t->dir_wd && ev->len && strcmp(ev->name, t->name) == 0);
                if (mine || (ev->mask & IN_Q_OVERFLOW))
                    wake(t);
            }
            p += sizeof *ev + ev->len;
        }
    }
}

static int inotify_ready(struct rill_worker *w)
{
    if (inotify_fd >= 0)
        return 1;
    inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd < 0)
        return 0; /* polling then */
    inotify_ev = event_new(w->base, inotify_fd, EV_READ | EV_PERSIST, on_inotify, NULL);
    event_add(inotify_ev, NULL);
    return 1;
}

/* (Re)watches the file now at the path, and its directory. */
static void watch(struct tail *t)
{
    if (t->polling_only || !inotify_ready(t->w))
        return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", t->follow.path);
    if (t->dir_wd < 0)
        t->dir_wd = inotify_add_watch(inotify_fd, dirname(dir), DIR_EVENTS);
    if (t->follow.fd >= 0)
        t->file_wd = inotify_add_watch(inotify_fd, t->follow.path, FILE_EVENTS);
}

/* ---- lines ------------------------------------------------------------------------ */

/* Reads what is new; returns 1 if bytes came, 0 if nothing. */
static int read_more(lua_State *L, struct tail *t)
{
    char buf[READ_CHUNK];
    off_t at;
    int events;
    ssize_t n = rill_follow_read(&t->follow, buf, sizeof buf, &at, &events);
    if (n < 0 && t->follow.refused)
        luaL_error(L, "tail %s: now leads to %s, outside the tail roots (--tail-root)",
                   t->follow.path, t->follow.denied);
    if (n < 0)
        luaL_error(L, "tail %s: %s", t->follow.path, strerror(errno));
    if (events & (RILL_FOLLOW_TRUNCATED | RILL_FOLLOW_ROTATED | RILL_FOLLOW_OPENED)) {
        evbuffer_drain(t->pending, evbuffer_get_length(t->pending)); /* a partial line is void */
        if (events & RILL_FOLLOW_TRUNCATED)
            t->notice = "truncated";
        watch(t);
    }
    if (n <= 0)
        return 0;
    if (evbuffer_get_length(t->pending) == 0)
        t->pending_at = at;
    evbuffer_add(t->pending, buf, (size_t)n);
    return 1;
}

/*
 * Takes the next line (with its terminator) into a Lua string, with its
 * offset; a line longer than max_line comes in pieces. Returns 0 if no line
 * is complete yet.
 */
static int take_line(lua_State *L, struct tail *t, off_t *offset, int strip)
{
    size_t have = evbuffer_get_length(t->pending), n;
    struct evbuffer_ptr nl = evbuffer_search(t->pending, "\n", 1, NULL);
    if (nl.pos >= 0 && (size_t)nl.pos < t->max_line)
        n = (size_t)nl.pos + 1;
    else if (have >= t->max_line)
        n = t->max_line; /* a piece of a very long line: memory stays bounded */
    else
        return 0;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    evbuffer_remove(t->pending, p, n);
    size_t keep = n;
    if (strip && keep > 0 && p[keep - 1] == '\n')
        keep -= keep > 1 && p[keep - 2] == '\r' ? 2 : 1;
    luaL_pushresultsize(&b, keep);
    *offset = t->pending_at;
    t->pending_at += (off_t)n;
    return 1;
}

static struct tail *check_tail(lua_State *L, int idx)
{
    struct tail *t = luaL_checkudata(L, idx, TAIL_MT);
    if (!t->open)
        luaL_error(L, "attempt to read a closed tail");
    return t;
}

static int park(lua_State *L, struct tail *t, lua_KFunction k)
{
    return rill_waiter_park(L, &t->wait, k, "a rill.tail iterator");
}

/* The iterator: line, offset; waits for the next line. */
static int next_k(lua_State *L, int status, lua_KContext ctx)
{
    struct tail *t = check_tail(L, 1);
    off_t offset;
    (void)status, (void)ctx;
    while (!take_line(L, t, &offset, t->strip))
        if (!read_more(L, t))
            return park(L, t, next_k);
    lua_pushinteger(L, (lua_Integer)offset);
    return 2;
}

static int tail_call(lua_State *L)
{
    lua_settop(L, 1);
    return next_k(L, LUA_OK, 0);
}

/* The event id of a line: the file's inode and the offset after the line. */
static void push_id(lua_State *L, struct tail *t, off_t next)
{
    char id[64];
    snprintf(id, sizeof id, "%llx-%lld", (unsigned long long)t->follow.ino, (long long)next);
    lua_pushstring(L, id);
}

/* The event iterator (rill.sse): {id=, data=} per line; {event="rill-gap"} notices. */
static int events_k(lua_State *L, int status, lua_KContext ctx)
{
    struct tail *t = check_tail(L, lua_upvalueindex(1));
    off_t offset;
    (void)status, (void)ctx;
    for (;;) {
        if (t->notice) {
            lua_createtable(L, 0, 2);
            lua_pushliteral(L, "rill-gap");
            lua_setfield(L, -2, "event");
            lua_pushstring(L, t->notice);
            lua_setfield(L, -2, "data");
            t->notice = NULL;
            return 1;
        }
        if (take_line(L, t, &offset, 0)) /* ids count the terminators */
            break;
        if (!read_more(L, t))
            return park(L, t, events_k);
    }
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    off_t next = offset + (off_t)len;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, line, len);
    lua_setfield(L, -2, "data");
    push_id(L, t, next);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)offset);
    lua_setfield(L, -2, "offset");
    return 1;
}

static int iter_events(lua_State *L)
{
    return events_k(L, LUA_OK, 0);
}

/* tail:events() → an iterator of {id=, data=, offset=} events (what rill.sse uses). */
static int tail_events(lua_State *L)
{
    check_tail(L, 1);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, iter_events, 1);
    return 1;
}

/* ---- opening and closing ---------------------------------------------------------- */

static void tail_close_res(struct rill_resource *res)
{
    struct tail *t = (struct tail *)res;
    if (!t->open)
        return;
    t->open = 0;
    ntails--;
    if (t->prev)
        t->prev->next = t->next;
    else
        tails = t->next;
    if (t->next)
        t->next->prev = t->prev;
    rill_follow_close(&t->follow); /* the descriptor goes with the client */
    evbuffer_free(t->pending);
    event_del(&t->poll_timer);
    rill_waiter_clear(&t->wait);
}

static int tail_close(lua_State *L)
{
    struct tail *t = luaL_checkudata(L, 1, TAIL_MT);
    rill_resource_remove(&t->res);
    tail_close_res(&t->res);
    return 0;
}

/* "<inode hex>-<offset>" of a Last-Event-ID. */
static int parse_id(const char *id, unsigned long long *ino, long long *off)
{
    char end;
    return id && sscanf(id, "%llx-%lld%c", ino, off, &end) == 2 && *off >= 0;
}

static const char from_usage[] = "from must be \"end\", \"start\", a line count or {offset=}";

/* from = {offset = N}: an integer from 0; past the end means the end. */
static off_t from_offset(lua_State *L, int idx)
{
    int isint = 0;
    lua_getfield(L, idx, "offset");
    lua_Integer off = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint || off < 0)
        luaL_argerror(L, 2, "from.offset must be an integer from 0");
    lua_pop(L, 1);
    return (off_t)off;
}

/*
 * Where to start. last_event_id resumes exactly after the line it names while
 * the file is the same and not shorter; otherwise the reader gets a rill-gap
 * notice ("rotated" or "truncated") and the whole current file. Every option
 * is checked even when the file is not there yet. Returns -1 (errno EACCES)
 * when the file now at the path is outside the roots.
 */
static int position(lua_State *L, struct tail *t, int opts)
{
    lua_getfield(L, opts, "from");
    int from_type = lua_type(L, -1);
    lua_Integer lines = 0;
    off_t offset = 0;
    if (from_type == LUA_TNUMBER)
        lines = rill_opt_field_int(L, opts, "from", 0, 0, MAX_FROM);
    else if (from_type == LUA_TTABLE)
        offset = from_offset(L, lua_absindex(L, -1));
    else if (from_type == LUA_TSTRING)
        luaL_argcheck(
            L, strcmp(lua_tostring(L, -1), "end") == 0 || strcmp(lua_tostring(L, -1), "start") == 0,
            2, from_usage);
    else
        luaL_argcheck(L, from_type == LUA_TNIL, 2, from_usage);
    int start = from_type == LUA_TSTRING && strcmp(lua_tostring(L, -1), "start") == 0;
    lua_pop(L, 1);
    lua_getfield(L, opts, "last_event_id");
    luaL_argcheck(L, lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING, 2,
                  "last_event_id must be a string");
    const char *last = lua_tostring(L, -1);

    int exists = rill_follow_open(&t->follow, RILL_FROM_END) == 0;
    if (!exists && t->follow.refused)
        return -1;
    unsigned long long ino;
    long long off;
    if (last && exists) {
        int ok = parse_id(last, &ino, &off);
        if (ok && ino == (unsigned long long)t->follow.ino && off <= t->follow.offset) {
            t->follow.offset = off;
        } else {
            t->notice = ok && ino == (unsigned long long)t->follow.ino ? "truncated" : "rotated";
            t->follow.offset = 0;
        }
    } else if (exists && from_type == LUA_TNUMBER) {
        t->follow.offset = rill_follow_last_lines(&t->follow, (long long)lines, MAX_SCAN);
    } else if (exists && from_type == LUA_TTABLE) {
        t->follow.offset = offset <= t->follow.offset ? offset : t->follow.offset;
    } else if (exists && start) {
        t->follow.offset = 0;
    }
    lua_pop(L, 1);
    t->pending_at = t->follow.offset;
    return 0;
}

/* nil, "tail <path>: <why>", "forbidden" */
static int forbidden(lua_State *L, const char *path, const char *why)
{
    lua_pushnil(L);
    lua_pushfstring(L, "tail %s: %s", path, why);
    lua_pushliteral(L, "forbidden");
    return 3;
}

/*
 * The real path of path (relative: from the app's directory) into real, or
 * why it may not be tailed (a string pushed on the stack).
 */
static const char *confine(lua_State *L, const char *path, char *real)
{
    char full[PATH_MAX];
    const char *why = NULL;
    if (!app_dir_set)
        rill_tail_app_dir(".", 1); /* under rill.run: the current directory */
    if (nroots == 0)
        return "no tail root (the app is in /: give --tail-root)";
    if (!absolute(path, full, sizeof full))
        return "path too long";
    if (!resolve(full, real, &why))
        return lua_pushfstring(L, "%s: %s", full, why);
    if (!under_a_root(real))
        return lua_pushfstring(L, "%s is outside the tail roots (--tail-root)", real);
    return NULL;
}

/*
 * rill.tail(path [, opts]) → tail (callable: line, offset), nil, nil, tail;
 * or nil, err, "forbidden" for a path outside the tail roots. A relative
 * path is taken from the app's directory. opts: from ("end", "start", N
 * lines, {offset=N}), last_event_id, strip (no terminators), max_line (bytes,
 * default 64 KiB), poll (seconds: stat only). Numbers are checked (luanum.h).
 */
static int tail_new(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    struct rill_task *task = rill_task_check(L);
    size_t max_line = (size_t)rill_opt_field_int(L, 2, "max_line", 64 * 1024, 1, MAX_LINE);
    double poll = rill_opt_field_range(L, 2, "poll", 0, 0, MAX_POLL);
    luaL_argcheck(L, poll == 0 || poll >= 0.01, 2, "poll must be 0 (inotify) or at least 0.01");
    char real[PATH_MAX];
    const char *why = confine(L, path, real);
    if (why)
        return forbidden(L, path, why);
    struct tail *t = lua_newuserdatauv(L, sizeof *t, 0); /* 3 */
    memset(t, 0, sizeof *t);
    t->res.close = tail_close_res;
    t->w = task->w;
    t->file_wd = t->dir_wd = -1;
    t->pending = evbuffer_new();
    rill_follow_init(&t->follow, real);
    t->follow.allowed = under_a_root;
    snprintf(t->name, sizeof t->name, "%s", strrchr(real, '/') + 1);
    rill_waiter_init(&t->wait, t->w->base, NULL);
    event_assign(&t->poll_timer, t->w->base, -1, EV_PERSIST, on_poll, t);
    t->open = 1;
    luaL_setmetatable(L, TAIL_MT);
    t->next = tails;
    if (tails)
        tails->prev = t;
    tails = t;
    ntails++;
    rill_resource_add(task, &t->res);

    t->max_line = max_line;
    lua_getfield(L, 2, "strip");
    t->strip = lua_toboolean(L, -1);
    lua_pop(L, 1);
    t->polling_only = poll > 0;
    t->poll_every = poll > 0 ? poll : 1.0; /* inotify's safety net, or the only way */
    if (position(L, t, 2) != 0) {
        rill_resource_remove(&t->res);
        tail_close_res(&t->res);
        return forbidden(L, path,
                         lua_pushfstring(L, "%s leads to %s, outside the tail roots (--tail-root)",
                                         real, t->follow.denied));
    }
    RILL_METRIC_ADD(tails_opened, 1); /* a path it may read: opened */
    watch(t);
    struct timeval tv = {(time_t)t->poll_every,
                         (suseconds_t)((t->poll_every - (time_t)t->poll_every) * 1e6)};
    event_add(&t->poll_timer, &tv);
    lua_settop(L, 3);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, 3);
    return 4;
}

static int tail_tostring(lua_State *L)
{
    struct tail *t = luaL_checkudata(L, 1, TAIL_MT);
    lua_pushfstring(L, "rill.tail (%s%s)", t->follow.path, t->open ? "" : ", closed");
    return 1;
}

static const luaL_Reg tail_methods[] = {
    {"events", tail_events},
    {"close", tail_close},
    {NULL, NULL},
};

static const luaL_Reg tail_meta[] = {
    {"__call", tail_call},  {"__gc", tail_close},          {"__close", tail_close},
    {"__sse", tail_events}, {"__tostring", tail_tostring}, {NULL, NULL},
};

void rill_open_tail(lua_State *L)
{
    luaL_newmetatable(L, TAIL_MT);
    luaL_setfuncs(L, tail_meta, 0);
    luaL_newlib(L, tail_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, tail_new);
    lua_setfield(L, -2, "tail");
}
