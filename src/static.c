/* SPDX-License-Identifier: MIT */
/*
 * The files rill.static serves (lua/rill/static.lua decides what to send;
 * this file opens it). rill.core.static_root(dir) is a served directory's
 * real path; rill.core.static_open(root, rel) opens root/rel as a rill.file:
 * an open descriptor with the size and time it had when it was opened, which
 * response.c sends with evbuffer_add_file (sendfile on a plain connection),
 * so the Lua state never holds a file's bytes.
 *
 * What static.c must never do: open anything outside the root. rel is
 * checked by name in Lua (no "..", no NUL), and here by the kernel:
 * openat2(2) from the root's descriptor with RESOLVE_BENEATH fails any path
 * that would leave it, by a symlink or otherwise, before anything outside is
 * opened, and races nothing (a symlink swapped in meanwhile is judged as it
 * is then). A symlink that stays inside by a relative path is followed. On
 * a kernel without openat2 (or a sandbox that forbids it) the descriptor is
 * checked once opened: its real path (/proc/self/fd) must be under the root.
 * Only regular files are served: a FIFO or a device is refused, and opening
 * never blocks (O_NONBLOCK).
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "effects.h"
#include "log.h"
#include "luanum.h"

#define FILE_MT "rill.file"
#define ROOT_MT "rill.static_root"

/* A served directory: its real path, and a descriptor paths are opened beneath. */
struct root {
    int fd;
    int beneath;    /* openat2 with RESOLVE_BENEATH works here (probed at each open of the root) */
    dev_t dev;      /* what fd is: a directory put in its place (a deploy's mv, or a */
    ino_t ino;      /* symlink like current -> releases/N swapped) is noticed within a second */
    time_t checked; /* when the path was last compared with fd (monotonic seconds) */
    dev_t failed_dev; /* a replacement that could not be opened, logged once */
    ino_t failed_ino;
    char given[PATH_MAX]; /* the path as given (absolute): what a deploy swaps */
    char path[PATH_MAX];  /* its real path when fd was opened */
};

/* How often a root's path is compared with the directory it has open (a deploy's swap). */
#define ROOT_RECHECK_SECONDS 1
/* openat2 may fail with EAGAIN when a rename raced a ".." in a symlink: tries before a 503. */
#define OPEN_TRIES 8

struct file {
    int fd; /* -1: closed, or handed over to a response */
    off_t size;
};

static struct file *check_file(lua_State *L, int idx)
{
    struct file *f = luaL_checkudata(L, idx, FILE_MT);
    if (f->fd < 0)
        luaL_error(L, "attempt to use a closed file");
    return f;
}

int rill_file_take(lua_State *L, int idx, off_t *size)
{
    struct file *f = check_file(L, idx);
    int fd = f->fd;
    f->fd = -1;
    *size = f->size;
    return fd;
}

/* Whether real is root or below it. */
static int under(const char *real, const char *root)
{
    size_t n = strlen(root);
    if (strncmp(real, root, n) != 0)
        return 0;
    return real[n] == '\0' || real[n] == '/' || (n == 1 && root[0] == '/');
}

/* The real path of what fd has open, into real (PATH_MAX bytes); NULL if /proc cannot tell. */
static char *fd_path(int fd, char *real)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, PATH_MAX - 1);
    if (n <= 0 || n == PATH_MAX - 1)
        return NULL;
    real[n] = '\0';
    return real;
}

/* Whether the file fd has open is under root, by its real path now. */
static int fd_under(int fd, const char *root)
{
    char real[PATH_MAX];
    return fd_path(fd, real) && under(real, root);
}

/* nil, why, status: 404 for what is not there, 403 for what may not be served. */
static int refuse(lua_State *L, const char *why, int status)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushinteger(L, status);
    return 3;
}

static int openat2_beneath(int dirfd, const char *rel, int flags)
{
#ifdef SYS_openat2
    /* O_LARGEFILE as open(2) adds it (0 on 64-bit); with O_PATH the kernel refuses it */
    unsigned long large = flags & O_PATH ? 0 : O_LARGEFILE;
    struct open_how how = {.flags = (unsigned long)flags | large,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
#else
    (void)dirfd, (void)rel, (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static time_t monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a clock stepped back stops no recheck */
    return ts.tv_sec;
}

/*
 * (Re)opens r's directory by the path given, its real path with it, and asks
 * the kernel whether openat2 works here: only ENOSYS (a kernel before 5.6)
 * or EPERM (a sandbox) means it does not; another failure (EMFILE) keeps
 * what was known.
 */
static int root_open(struct root *r, int first)
{
    struct stat st;
    char real[PATH_MAX];
    int fd = open(r->given, O_PATH | O_DIRECTORY | O_CLOEXEC);
    /* the path of what was opened (a swap between an open and a realpath would pair two) */
    if (fd < 0 || fstat(fd, &st) != 0 || !(fd_path(fd, real) || realpath(r->given, real))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    memcpy(r->path, real, sizeof real);
    r->checked = monotonic_seconds();
    int probe = openat2_beneath(fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (probe >= 0)
        close(probe);
    if (probe >= 0 || first)
        r->beneath = probe >= 0 || (errno != ENOSYS && errno != EPERM);
    else if (errno == ENOSYS || errno == EPERM)
        r->beneath = 0;
    return 0;
}

/*
 * A directory put where r's was (mv, or a symlink such as current ->
 * releases/N swapped by ln -sfn) is served from now on; checked once a
 * second. If it cannot be opened, the old one serves on, and it is logged.
 */
static void root_recheck(struct root *r)
{
    struct stat st;
    time_t now = monotonic_seconds();
    if (now - r->checked < ROOT_RECHECK_SECONDS)
        return;
    r->checked = now;
    if (stat(r->given, &st) != 0 || !S_ISDIR(st.st_mode) ||
        (st.st_dev == r->dev && st.st_ino == r->ino))
        return;
    if (root_open(r, 0) == 0 || (st.st_dev == r->failed_dev && st.st_ino == r->failed_ino))
        return;
    r->failed_dev = st.st_dev;
    r->failed_ino = st.st_ino;
    rill_log_at(RILL_LOG_WARN,
                "rill.static: cannot open %s, put in place of the root: %s (the old "
                "one serves on)",
                r->given, strerror(errno));
}

/* rill.core.static_root(dir) → a root (relative: from the app's directory); nil, why. */
static int core_static_root(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    char full[PATH_MAX];
    struct stat st;
    if (!rill_app_path(dir, full, sizeof full))
        return luaL_argerror(L, 1, "path too long");
    struct root *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->fd = -1;
    luaL_setmetatable(L, ROOT_MT);
    memcpy(r->given, full, sizeof full);
    if (stat(full, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", full, strerror(errno));
        return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a directory", full);
        return 2;
    }
    if (root_open(r, 1) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", full, strerror(errno));
        return 2;
    }
    return 1;
}

static int root_gc(lua_State *L)
{
    struct root *r = luaL_checkudata(L, 1, ROOT_MT);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    return 0;
}

/*
 * rel opened beneath r: a descriptor, or -1 with errno (EXDEV, ELOOP: it
 * would leave the root). Without openat2 it is opened by path, then the
 * descriptor's real path is checked.
 */
static int open_beneath(struct root *r, const char *rel, const char *path)
{
    const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (r->beneath) {
        int fd = -1;
        for (int i = 0; i < OPEN_TRIES; i++)
            if ((fd = openat2_beneath(r->fd, rel, flags)) >= 0 ||
                (errno != EAGAIN && errno != EINTR))
                break;
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != EINVAL))
            return fd;
        r->beneath = 0; /* refused as a call (a sandbox), not for this path: the fallback */
    }
    int fd;
    while ((fd = open(path, flags)) < 0 && errno == EINTR)
        ;
    if (fd >= 0 && !fd_under(fd, r->path)) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

/*
 * rill.core.static_open(root, rel) → file, size, mtime (seconds), its nanoseconds;
 * or nil, "dir" for a directory; or nil, why, 403 or 404. root is a
 * static_root; rel has no ".." segment and no NUL (checked by the caller).
 */
static int core_static_open(lua_State *L)
{
    size_t rellen;
    struct root *r = luaL_checkudata(L, 1, ROOT_MT);
    const char *rel = luaL_checklstring(L, 2, &rellen);
    char path[PATH_MAX];
    struct stat st;
    luaL_argcheck(L, r->fd >= 0, 1, "not an open static root");
    luaL_argcheck(L, strlen(rel) == rellen, 2, "a NUL in the path");
    luaL_argcheck(L, rel[0] != '/', 2, "an absolute path");
    root_recheck(r); /* before path is made from r's real path */
    int n = snprintf(path, sizeof path, "%.*s/%s", (int)(sizeof r->path - 1), r->path, rel);
    if (n < 0 || (size_t)n >= sizeof path)
        return refuse(L, "path too long", 404);
    struct file *f = lua_newuserdatauv(L, sizeof *f, 0);
    f->fd = -1;
    luaL_setmetatable(L, FILE_MT); /* closed until open succeeds: __gc has nothing to do */
    int fd = open_beneath(r, rel[0] ? rel : ".", path);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG)
            return refuse(L, "not found", 404);
        if (e == EMFILE || e == ENFILE || e == ENOMEM || e == EINTR || e == EAGAIN)
            return refuse(L, "busy", 503); /* the server's want, not the client's fault */
        return refuse(L, "forbidden", 403);
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return refuse(L, "forbidden", 403);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        lua_pushnil(L);
        lua_pushliteral(L, "dir");
        return 2;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return refuse(L, "not a regular file", 403);
    }
    f->fd = fd;
    f->size = st.st_size;
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_nsec); /* two writes in one second: two ETags */
    return 4;
}

/* file:read(offset, length) → up to length bytes from offset (rill.test's in-process replies). */
static int file_read(lua_State *L)
{
    struct file *f = check_file(L, 1);
    lua_Integer offset = rill_check_int_range(L, 2, 0, (lua_Integer)f->size);
    lua_Integer length = rill_check_int_range(L, 3, 0, (lua_Integer)f->size - offset);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)length);
    size_t got = 0;
    while (got < (size_t)length) {
        ssize_t n = pread(f->fd, p + got, (size_t)length - got, (off_t)(offset + (lua_Integer)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* truncated since it was opened: what is there */
        got += (size_t)n;
    }
    luaL_pushresultsize(&b, got);
    return 1;
}

/* file:size() → its size when it was opened. */
static int file_size(lua_State *L)
{
    struct file *f = check_file(L, 1);
    lua_pushinteger(L, (lua_Integer)f->size);
    return 1;
}

/* file:close(), also __gc and __close: idempotent. */
static int file_close(lua_State *L)
{
    struct file *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    return 0;
}

static int file_tostring(lua_State *L)
{
    struct file *f = luaL_checkudata(L, 1, FILE_MT);
    lua_pushfstring(L, "rill.file (%s)", f->fd < 0 ? "closed" : "open");
    return 1;
}

static const luaL_Reg file_methods[] = {
    {"read", file_read},
    {"size", file_size},
    {"close", file_close},
    {NULL, NULL},
};

static const luaL_Reg file_meta[] = {
    {"__gc", file_close},
    {"__close", file_close},
    {"__tostring", file_tostring},
    {NULL, NULL},
};

static const luaL_Reg static_funcs[] = {
    {"static_root", core_static_root},
    {"static_open", core_static_open},
    {NULL, NULL},
};

void rill_open_static(lua_State *L)
{
    luaL_newmetatable(L, ROOT_MT);
    lua_pushcfunction(L, root_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, FILE_MT);
    luaL_setfuncs(L, file_meta, 0);
    luaL_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, static_funcs, 0);
}
