/* SPDX-License-Identifier: MIT */
/*
 * A counting allocator for the Lua state of a process, by LD_PRELOAD: it wraps
 * lua_newstate so that every block the state allocates goes through count()
 * on its way to the program's own allocator, and keeps each live block's kind
 * and size. Lua passes an object's type tag as osize when it creates one, 0
 * for the other blocks (stacks, CallInfo, table parts, ...), so the kinds are
 * Lua's own. SIGWINCH appends the live bytes per kind, and per size for the
 * untagged blocks, to $LUACOUNT_OUT. For bench/run.sh's table of where an
 * idle stream's bytes go; built by it as build/bench/luacount.so.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *(*lua_Alloc)(void *ud, void *ptr, size_t osize, size_t nsize);
typedef struct lua_State lua_State;

#define SLOTS (1u << 22) /* live blocks tracked: open addressing, far more than a bench holds */
#define KINDS 64
#define SIZES 4096 /* untagged blocks by size, up to this many bytes */

static struct slot {
    void *p;
    uint32_t size;
    uint8_t kind;
} * slots;
static lua_Alloc real_f;
static void *real_ud;
static size_t bytes[KINDS], blocks[KINDS], sized[SIZES + 1], sized_n[SIZES + 1];

static size_t hash(void *p)
{
    return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 42 & (SLOTS - 1);
}

static struct slot *find(void *p)
{
    for (size_t i = hash(p);; i = (i + 1) & (SLOTS - 1))
        if (slots[i].p == p || !slots[i].p)
            return &slots[i];
}

static void forget(void *p)
{
    struct slot *s = find(p);
    if (!s->p)
        return;
    bytes[s->kind] -= s->size;
    blocks[s->kind]--;
    if (!s->kind) {
        sized[s->size < SIZES ? s->size : SIZES] -= s->size;
        sized_n[s->size < SIZES ? s->size : SIZES]--;
    }
    /* backward-shift deletion keeps the probe chains whole */
    size_t i = (size_t)(s - slots);
    for (size_t j = (i + 1) & (SLOTS - 1); slots[j].p; j = (j + 1) & (SLOTS - 1)) {
        size_t h = hash(slots[j].p);
        if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i].p = NULL;
}

static void remember(void *p, size_t size, unsigned kind)
{
    struct slot *s = find(p);
    s->p = p;
    s->size = (uint32_t)size;
    s->kind = (uint8_t)(kind < KINDS ? kind : KINDS - 1);
    bytes[s->kind] += size;
    blocks[s->kind]++;
    if (!s->kind) {
        sized[size < SIZES ? size : SIZES] += size;
        sized_n[size < SIZES ? size : SIZES]++;
    }
}

static void *count(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    unsigned kind = 0;
    if (ptr) {
        struct slot *s = find(ptr);
        kind = s->p ? s->kind : 0;
        forget(ptr);
    } else {
        kind = (unsigned)osize; /* a new block: Lua's type tag, or 0 */
    }
    void *p = real_f(real_ud, ptr, osize, nsize);
    if (p && nsize)
        remember(p, nsize, kind);
    else if (!p && nsize && ptr) /* a failed resize keeps the old block */
        remember(ptr, osize, kind);
    return p;
}

static void dump(int sig)
{
    (void)sig;
    const char *path = getenv("LUACOUNT_OUT");
    int fd = open(path ? path : "luacount.out", O_WRONLY | O_CREAT | O_APPEND, 0644);
    char line[128];
    int n = snprintf(line, sizeof line, "snapshot\n");
    if (write(fd, line, (size_t)n) < 0)
        return;
    for (int k = 0; k < KINDS; k++)
        if (blocks[k]) {
            n = snprintf(line, sizeof line, "kind %d %zu %zu\n", k, blocks[k], bytes[k]);
            if (write(fd, line, (size_t)n) < 0)
                return;
        }
    for (int z = 0; z <= SIZES; z++)
        if (sized_n[z]) {
            n = snprintf(line, sizeof line, "size %d %zu %zu\n", z, sized_n[z], sized[z]);
            if (write(fd, line, (size_t)n) < 0)
                return;
        }
    close(fd);
}

lua_State *lua_newstate(lua_Alloc f, void *ud)
{
    static lua_State *(*real)(lua_Alloc, void *);
    if (!real)
        real = (lua_State * (*)(lua_Alloc, void *)) dlsym(RTLD_NEXT, "lua_newstate");
    if (!slots) {
        slots = calloc(SLOTS, sizeof *slots);
        signal(SIGWINCH, dump); /* not USR2: rill's stats line takes that one over */
    }
    real_f = f;
    real_ud = ud;
    return real(count, NULL);
}
