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
 * checked by name in Lua (no "..", no NUL), and here the descriptor once
 * opened: its real path (/proc/self/fd) must be under the root, so a
 * symlink leading out of it, or swapped in after the check, is refused
 * (a symlink that stays inside is followed, as nginx does). Only regular
 * files are served: a FIFO or a device is refused, and opening never
 * blocks (O_NONBLOCK).
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "effects.h"
#include "luanum.h"

#define FILE_MT "rill.file"

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

/* Whether the file fd has open is under root, by its real path now. */
static int fd_under(int fd, const char *root)
{
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n < 0 || n == (ssize_t)sizeof real - 1)
        return 0;
    real[n] = '\0';
    return under(real, root);
}

/* nil, why, status: 404 for what is not there, 403 for what may not be served. */
static int refuse(lua_State *L, const char *why, int status)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushinteger(L, status);
    return 3;
}

/* rill.core.static_root(dir) → its real path (relative: from the app's directory); nil, why. */
static int core_static_root(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    char full[PATH_MAX], real[PATH_MAX];
    struct stat st;
    if (!rill_app_path(dir, full, sizeof full))
        return luaL_argerror(L, 1, "path too long");
    if (!realpath(full, real) || stat(real, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", full, strerror(errno));
        return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a directory", full);
        return 2;
    }
    lua_pushstring(L, real);
    return 1;
}

/*
 * rill.core.static_open(root, rel) → file, size, mtime (seconds), "file";
 * or nil, "dir" for a directory; or nil, why, 403 or 404. root is a
 * static_root; rel has no ".." segment and no NUL (checked by the caller).
 */
static int core_static_open(lua_State *L)
{
    size_t rootlen, rellen;
    const char *root = luaL_checklstring(L, 1, &rootlen);
    const char *rel = luaL_checklstring(L, 2, &rellen);
    char path[PATH_MAX];
    struct stat st;
    luaL_argcheck(L, root[0] == '/' && strlen(root) == rootlen, 1, "not a static root");
    luaL_argcheck(L, strlen(rel) == rellen, 2, "a NUL in the path");
    if (rootlen + rellen + 2 > sizeof path)
        return refuse(L, "path too long", 404);
    snprintf(path, sizeof path, "%s/%s", root, rel);
    struct file *f = lua_newuserdatauv(L, sizeof *f, 0);
    f->fd = -1;
    luaL_setmetatable(L, FILE_MT); /* closed until open succeeds: __gc has nothing to do */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return refuse(L,
                      errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG ? "not found"
                                                                                   : "forbidden",
                      errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG ? 404 : 403);
    if (!fd_under(fd, root) || fstat(fd, &st) != 0) {
        close(fd);
        return refuse(L, "outside the root", 403);
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
    return 3;
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
    luaL_newmetatable(L, FILE_MT);
    luaL_setfuncs(L, file_meta, 0);
    luaL_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, static_funcs, 0);
}
