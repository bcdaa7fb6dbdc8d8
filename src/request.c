/* SPDX-License-Identifier: MIT */
/*
 * The Lua view of a request, `req`. Fields are computed on first access and
 * cached in the userdata's uservalue table, so a handler that reads nothing
 * costs one small userdata. The router's req.params and any field a handler
 * sets land in the same table. The method and the path, which every routed
 * request reads, are kept without it.
 */
#include "request.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "effects.h"
#include "proxy.h"
#include "urlcode.h"

#define REQUEST_MT  "rill.request"
#define HEADERS_MT  "rill.headers"
#define EXT_METHODS "rill.request.methods" /* core.extend_request: req:name() */
#define EXT_LAZY    "rill.request.lazy"    /* and req.name, computed once */

struct req_view {
    unsigned slot;               /* its request's in `live`, plus one; 0: none */
    enum evhttp_cmd_type method; /* readable after the end too */
    unsigned long serial;        /* its request's, told apart from a later one in the slot */
};

/*
 * Live requests by slot. A view names its request by slot and serial, not by
 * pointer: once the request is over its slot is emptied (or holds another
 * request), and the view finds nothing. So a view needs no anchor while its
 * request lives and no finalizer after (each cost hundreds of instructions
 * per request), and it may outlive the request in any Lua variable.
 */
static struct rill_request **live;
static unsigned *free_slots;
static unsigned nslots, nused, nfree;
static unsigned long serials;

/* Gives r a slot; 0 when out of memory (its view then reads as ended). */
static unsigned take_slot(struct rill_request *r)
{
    if (!nfree && nused == nslots) {
        unsigned n = nslots ? nslots * 2 : 64;
        struct rill_request **grown = realloc(live, n * sizeof *live);
        if (grown)
            live = grown;
        unsigned *grown_free = grown ? realloc(free_slots, n * sizeof *free_slots) : NULL;
        if (!grown_free)
            return 0;
        free_slots = grown_free;
        nslots = n;
    }
    unsigned slot = nfree ? free_slots[--nfree] : nused++;
    live[slot] = r;
    r->slot = slot + 1;
    r->serial = ++serials;
    return r->slot;
}

static struct rill_request *view_request(const struct req_view *v)
{
    struct rill_request *r = v->slot ? live[v->slot - 1] : NULL;
    return r && r->serial == v->serial ? r : NULL;
}

struct rill_request *rill_request_current(lua_State *L)
{
    struct rill_task *t = rill_task_check(L);
    if (!t->owner_is_request)
        luaL_error(L, "no HTTP request here (this code runs in rill.run)");
    return (struct rill_request *)t;
}

/* ---- request id ---------------------------------------------------------- */

/* ASCII only, whatever locale the app sets: the access log writes an id as it is. */
static int id_char_ok(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=';
}

/* An incoming id is taken as is when short and made of safe characters only. */
static int copy_id(char *dst, size_t cap, const char *src, size_t len)
{
    if (len == 0 || len >= cap || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!id_char_ok((unsigned char)src[i]))
            return 0;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 1;
}

static int lower_hex(const char *s, int n)
{
    int nonzero = 0;
    for (int i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
        nonzero |= s[i] != '0';
    }
    return 1 + nonzero; /* 1: all zeros, 2: hex with a non-zero digit */
}

/*
 * A valid W3C traceparent, "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>":
 * lower-case hex, trace and parent ids not all zeros, version not ff; a later
 * version may append "-..." after the flags, version 00 may not.
 */
static int traceparent_ok(const char *tp)
{
    size_t n = strlen(tp);
    if (n < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return 0;
    if (!lower_hex(tp, 2) || strncmp(tp, "ff", 2) == 0 || lower_hex(tp + 3, 32) != 2 ||
        lower_hex(tp + 36, 16) != 2 || !lower_hex(tp + 53, 2))
        return 0;
    return strncmp(tp, "00", 2) == 0 ? n == 55 : n == 55 || tp[55] == '-';
}

/* n random bytes (from the pool below) as 2n lower-case hex digits, never all zeros. */
/*
 * Random bytes from a pool the kernel fills 4 KiB at a time: an id per
 * request would otherwise be a system call per request. A forked worker
 * empties the pool it inherited (rill_random_forked), or its ids would be
 * its siblings'.
 */
static struct {
    unsigned char bytes[4096];
    size_t left;
} pool;

void rill_random_forked(void)
{
    pool.left = 0;
}

/* The pool filled whole: a read past 256 bytes may come back short, or be interrupted. */
static int pool_fill(void)
{
    size_t got = 0;
    while (got < sizeof pool.bytes) {
        ssize_t n = getrandom(pool.bytes + got, sizeof pool.bytes - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return -1;
    }
    pool.left = sizeof pool.bytes;
    return 0;
}

static int pool_take(unsigned char *out, size_t n)
{
    if (pool.left < n && pool_fill() != 0)
        return -1;
    memcpy(out, pool.bytes + sizeof pool.bytes - pool.left, n);
    memset(pool.bytes + sizeof pool.bytes - pool.left, 0, n); /* used once */
    pool.left -= n;
    return 0;
}

static void random_hex(char *out, size_t n)
{
    static uint64_t counter;
    unsigned char b[16] = {0};
    if (pool_take(b, n) != 0) { /* no entropy: unique, if guessable */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed = (uint64_t)getpid() << 32 ^ ++counter << 48 ^ (uint64_t)ts.tv_sec << 30 ^
                        (uint64_t)ts.tv_nsec;
        for (size_t i = 0; i < n; i += 8) { /* splitmix64 */
            uint64_t z = (seed += 0x9e3779b97f4a7c15u);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            z ^= z >> 31;
            memcpy(b + i, &z, n - i < 8 ? n - i : 8);
        }
    }
    int any = 0;
    for (size_t i = 0; i < n; i++)
        any |= b[i];
    rill_hex_lower(out, b, n);
    if (!any) /* all zeros is the invalid id */
        out[2 * n - 1] = '1';
    out[2 * n] = '\0';
}

/* The value of header name when the request has exactly one such line, else NULL. */
static const char *single_header(struct rill_request *r, const char *name)
{
    if (!r->req)
        return NULL;
    const char *v = NULL;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(r->req), next)
    {
        /* the first letter first: most lines are ruled out without a call */
        if ((kv->key[0] | 0x20) != (name[0] | 0x20) || strcasecmp(kv->key, name) != 0)
            continue;
        if (v)
            return NULL; /* two lines: neither is believed */
        v = kv->value;
    }
    return v;
}

/*
 * The trace id and flags, from a valid incoming traceparent or new, decided
 * once. Two traceparent lines are invalid; of the flags only those W3C
 * defines (sampled 0x01, random 0x02) are kept, the others zero.
 */
static void trace_init(struct rill_request *r)
{
    if (r->trace[0])
        return;
    const char *tp = single_header(r, "traceparent");
    if (tp && traceparent_ok(tp)) {
        memcpy(r->trace, tp + 3, 32);
        r->trace[32] = '\0';
        unsigned flags = (unsigned)strtoul((char[3]){tp[53], tp[54], '\0'}, NULL, 16);
        snprintf(r->trace_flags, sizeof r->trace_flags, "%02x", flags & 0x03u);
    } else { /* an invalid one is ignored, never echoed */
        random_hex(r->trace, 16);
        memcpy(r->trace_flags, "01", 3);
    }
}

const char *rill_request_trace(struct rill_request *r)
{
    if (!r->trace[0] && !r->req) { /* its head is gone (it replied first): a trace of its own */
        random_hex(r->trace, 16);
        memcpy(r->trace_flags, "01", 3);
    }
    trace_init(r);
    return r->trace;
}

const char *rill_request_id(struct rill_request *r)
{
    if (r->id[0] || (!r->req && !r->trace[0]))
        return r->id[0] ? r->id : "-";                /* ended before anyone asked: no id to give */
    const char *v = single_header(r, "X-Request-Id"); /* two lines: a generated id */
    if (v && copy_id(r->id, sizeof r->id, v, strlen(v)))
        return r->id;
    trace_init(r);
    memcpy(r->id, r->trace, sizeof r->trace);
    return r->id;
}

void rill_request_traceparent(struct rill_request *r, char out[56])
{
    char span[17];
    trace_init(r);
    random_hex(span, 8);
    snprintf(out, 56, "00-%s-%s-%s", r->trace, span, r->trace_flags);
}

/* ---- fields ---------------------------------------------------------------- */

const char *rill_method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

/* Appends value to t[key], turning a repeated key into a list. Stack: key value → (empty). */
void rill_table_add_multi(lua_State *L, int t)
{
    lua_pushvalue(L, -2);
    int old = lua_rawget(L, t); /* key value old */
    if (old == LUA_TNIL) {
        lua_pop(L, 1);
        lua_rawset(L, t);
        return;
    }
    if (old != LUA_TTABLE) { /* the second value: a list of both */
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1); /* key value list */
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_rawset(L, t);
    }
    lua_insert(L, -2); /* key list value */
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

static void push_decoded(lua_State *L, const char *s, size_t len, int flags)
{
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len);
    ssize_t n = rill_url_decode(out, s, len, flags);
    luaL_pushresultsize(&b, (size_t)(n < 0 ? 0 : n));
}

static void query_pair(const char *k, size_t kl, const char *v, size_t vl, int has_value, void *arg)
{
    lua_State *L = arg;
    (void)has_value;
    push_decoded(L, k, kl, RILL_URL_PLUS);
    push_decoded(L, v, vl, RILL_URL_PLUS);
    rill_table_add_multi(L, lua_absindex(L, -3));
}

static void push_query(lua_State *L, const char *q)
{
    lua_newtable(L);
    if (q)
        rill_query_split(q, strlen(q), query_pair, L);
}

/*
 * rill.core.extend_request(methods, lazy): req gains methods[name] (as req:name())
 * and lazy[name] (req.name, computed by lazy[name](req) on first use).
 */
static int core_extend_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, EXT_METHODS);
    lua_pushvalue(L, 2);
    lua_setfield(L, LUA_REGISTRYINDEX, EXT_LAZY);
    return 0;
}

/* rill.core.query(s): a query string decoded as req.query is (for fake requests). */
static int core_query(lua_State *L)
{
    size_t len;
    const char *q = luaL_checklstring(L, 1, &len);
    lua_newtable(L);
    rill_query_split(q, len, query_pair, L);
    return 1;
}

static void push_path(lua_State *L, const char *p)
{
    if (!p || !*p)
        p = "/";
    push_decoded(L, p, strlen(p), 0);
}

/* One header line into the headers table at t, its name lower-cased. */
static void add_header_line(lua_State *L, int t, const char *key, const char *value)
{
    luaL_Buffer b;
    size_t n = strlen(key);
    char *low = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    luaL_pushresultsize(&b, n);
    lua_pushstring(L, value);
    rill_table_add_multi(L, t);
}

static void push_headers(lua_State *L, struct evhttp_request *req)
{
    struct evkeyval *kv;
    lua_newtable(L);
    int t = lua_gettop(L);
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        add_header_line(L, t, kv->key, kv->value);
    }
    luaL_setmetatable(L, HEADERS_MT);
}

static void push_body(lua_State *L, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    lua_pushlstring(L, n ? (const char *)evbuffer_pullup(in, -1) : "", n);
}

static int body_streamed(const struct rill_request *r)
{
    long long length;
    return r->conn && rill_conn_body_streamed(r->conn, &length);
}

static void push_peer(lua_State *L, struct evhttp_request *req, int want_port)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    if (want_port)
        lua_pushinteger(L, port);
    else
        lua_pushstring(L, addr ? addr : "");
}

/*
 * req.remote_addr: the peer, or behind a --trust-proxy proxy the client its
 * X-Forwarded-For (or Forwarded) lines name (proxy.c). Only the last
 * RILL_PROXY_MAX_LINES lines are read: the walk starts at the rightmost, which
 * the proxy wrote, and a client's extra lines cannot push it out.
 */
const char *rill_request_client(struct evhttp_request *req, const char *peer, char *out, size_t cap)
{
    if (!rill_proxy_any())
        return peer;
    const char *name = rill_proxy_header_name(), *lines[RILL_PROXY_MAX_LINES];
    int total = 0, n = 0;
    struct evkeyval *kv;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    TAILQ_FOREACH(kv, in, next)
    {
        total += strcasecmp(kv->key, name) == 0;
    }
    int skip = total - RILL_PROXY_MAX_LINES;
    TAILQ_FOREACH(kv, in, next)
    {
        if (strcasecmp(kv->key, name) == 0 && skip-- <= 0)
            lines[n++] = kv->value;
    }
    return rill_proxy_client(peer, lines, n, out, cap);
}

static void push_client(lua_State *L, struct evhttp_request *req)
{
    char out[RILL_PROXY_ADDR_CAP];
    push_peer(L, req, 0);
    lua_pushstring(L, rill_request_client(req, lua_tostring(L, -1), out, sizeof out));
    lua_remove(L, -2);
}

/* ---- the stash: what a view reads once evhttp's request is gone ---------------- */

struct rill_stash {
    const char *target, *path, *query; /* the raw request target and its parts; query may be NULL */
    const char *peer, *client;         /* req.peer_addr and req.remote_addr */
    const char *headers;               /* nheaders NUL-terminated names, each before its value */
    unsigned nheaders;
    ev_uint16_t port;
    char bytes[]; /* where all of them are */
};

static size_t stash_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s to *at and returns the copy; NULL stays NULL. */
static const char *stash_put(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = memcpy(*at, s, n);
    *at += n;
    return copy;
}

int rill_request_stash(struct rill_request *r)
{
    struct evhttp_request *req = r->req;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *target = evhttp_request_get_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    char *peer = NULL, client_buf[RILL_PROXY_ADDR_CAP];
    ev_uint16_t port = 0;
    struct evkeyval *kv;
    if (evcon)
        evhttp_connection_get_peer(evcon, &peer, &port);
    const char *peer_s = peer ? peer : ""; /* counted as it is copied */
    const char *client = rill_request_client(req, peer_s, client_buf, sizeof client_buf);
    size_t n = stash_len(target) + stash_len(path) + stash_len(query) + stash_len(peer_s) +
               stash_len(client);
    unsigned lines = 0;
    TAILQ_FOREACH(kv, in, next)
    {
        n += stash_len(kv->key) + stash_len(kv->value);
        lines++;
    }
    (void)rill_request_trace(r); /* decided from the head while it is there */
    (void)rill_request_id(r);
    struct rill_stash *st = malloc(sizeof *st + n);
    if (!st)
        return -1;
    char *at = st->bytes;
    st->target = stash_put(&at, target);
    st->path = stash_put(&at, path);
    st->query = stash_put(&at, query);
    st->peer = stash_put(&at, peer_s);
    st->client = stash_put(&at, client);
    st->headers = at;
    TAILQ_FOREACH(kv, in, next)
    {
        stash_put(&at, kv->key);
        stash_put(&at, kv->value);
    }
    st->nheaders = lines;
    st->port = port;
    r->stash = st;
    return 0;
}

static void push_stashed_headers(lua_State *L, const struct rill_stash *st)
{
    const char *p = st->headers;
    lua_createtable(L, 0, (int)st->nheaders);
    int t = lua_gettop(L);
    for (unsigned i = 0; i < st->nheaders; i++) {
        const char *value = p + strlen(p) + 1;
        add_header_line(L, t, p, value);
        p = value + strlen(value) + 1;
    }
    luaL_setmetatable(L, HEADERS_MT);
}

/* push_field once evhttp's request is gone: the same fields, from the stash. */
static int push_stashed(lua_State *L, struct rill_request *r, const char *key)
{
    const struct rill_stash *st = r->stash;
    if (strcmp(key, "path") == 0)
        push_path(L, st->path);
    else if (strcmp(key, "target") == 0)
        lua_pushstring(L, st->target);
    else if (strcmp(key, "query") == 0)
        push_query(L, st->query);
    else if (strcmp(key, "headers") == 0)
        push_stashed_headers(L, st);
    else if (strcmp(key, "body") == 0)
        lua_pushliteral(L, ""); /* only a request without a body is stashed */
    else if (strcmp(key, "remote_addr") == 0)
        lua_pushstring(L, st->client);
    else if (strcmp(key, "peer_addr") == 0)
        lua_pushstring(L, st->peer);
    else if (strcmp(key, "remote_port") == 0)
        lua_pushinteger(L, st->port);
    else if (strcmp(key, "id") == 0)
        lua_pushstring(L, rill_request_id(r));
    else if (strcmp(key, "scheme") == 0)
        lua_pushstring(L, r->tls ? "https" : "http");
    else
        return 0;
    return 1;
}

/* Pushes field `key` of r, or returns 0 when there is no such field. */
static int push_field(lua_State *L, struct rill_request *r, const char *key)
{
    struct evhttp_request *req = r->req;
    if (!req)
        return push_stashed(L, r, key);
    if (strcmp(key, "path") == 0)
        push_path(L, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)));
    else if (strcmp(key, "target") == 0)
        lua_pushstring(L, evhttp_request_get_uri(req));
    else if (strcmp(key, "query") == 0)
        push_query(L, evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)));
    else if (strcmp(key, "headers") == 0)
        push_headers(L, req);
    else if (strcmp(key, "body") == 0 && body_streamed(r))
        return luaL_error(L, "req.body: this request's body is streamed (rill.streamed_body) and "
                             "not read yet: read it with req:body_reader() or req:read_body()");
    else if (strcmp(key, "body") == 0)
        push_body(L, req);
    else if (strcmp(key, "remote_addr") == 0)
        push_client(L, req);
    else if (strcmp(key, "peer_addr") == 0)
        push_peer(L, req, 0);
    else if (strcmp(key, "remote_port") == 0)
        push_peer(L, req, 1);
    else if (strcmp(key, "id") == 0)
        lua_pushstring(L, rill_request_id(r));
    else if (strcmp(key, "scheme") == 0)
        lua_pushstring(L, r->tls ? "https" : "http");
    else
        return 0;
    return 1;
}

/* ---- metamethods ---------------------------------------------------------- */

/* The metatable is the metamethods' upvalue: no registry lookup by name on every field. */
static struct req_view *check_view(lua_State *L)
{
    struct req_view *v = lua_touserdata(L, 1);
    if (!v || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        luaL_typeerror(L, 1, REQUEST_MT);
    lua_pop(L, 1);
    return v;
}

/* Stack: view → pushes its cache table, creating it on first use. */
static int push_cache(lua_State *L, int create)
{
    if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    if (!create)
        return 0;
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
    return 1;
}

/* Stack: view, key, value → the value is cached under the key. */
static void cache_value(lua_State *L)
{
    push_cache(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/*
 * Fields every handler reads (the router does) cost no cache table: the
 * method is kept in the view, the path in its second user value. req.params
 * of a route without parameters is an empty table made only when read.
 */
/*
 * A field rill's C does not know: a method the Lua side added
 * (core.extend_request: req:json(), req:form()), given as it is, or a lazy
 * field (req.cookies), computed once by its function and cached. Stack: view
 * key. 0: none (nil); 1: a method on the top; 2: a lazy field's value on the top.
 */
static int push_extension(lua_State *L)
{
    static const char *const kinds[] = {EXT_METHODS, EXT_LAZY};
    for (int kind = 0; kind < 2; kind++) {
        if (lua_getfield(L, LUA_REGISTRYINDEX, kinds[kind]) != LUA_TTABLE) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TFUNCTION) {
            lua_pop(L, 2);
            continue;
        }
        lua_remove(L, -2); /* the table */
        if (kind == 0)
            return 1;
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1); /* its error (a client error for a bad header) is the handler's */
        return 2;
    }
    return 0;
}

static int request_index(lua_State *L)
{
    struct req_view *v = check_view(L);
    if (push_cache(L, 0)) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL)
            return 1;
        lua_pop(L, 2);
    }
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *key = lua_tostring(L, 2);
    if (strcmp(key, "method") == 0) {
        lua_pushstring(L, rill_method_name(v->method));
        return 1;
    }
    int is_path = strcmp(key, "path") == 0;
    if (is_path && lua_getiuservalue(L, 1, 2) == LUA_TSTRING)
        return 1;
    struct rill_request *r = view_request(v);
    if (!r || (!r->req && !r->stash)) {
        if (strcmp(key, "params") == 0)
            return 0;
        return luaL_error(L, "request field '%s' read after the request ended", key);
    }
    if (strcmp(key, "params") == 0) {
        lua_newtable(L);
    } else if (!push_field(L, r, key)) {
        int ext = push_extension(L);
        if (ext < 2)
            return ext; /* a method, or nil for an unknown field, like a table's */
    }
    if (is_path) {
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 2);
    } else {
        cache_value(L);
    }
    return 1;
}

static int request_newindex(lua_State *L)
{
    check_view(L);
    push_cache(L, 1);
    lua_insert(L, 2);
    lua_rawset(L, 2);
    return 0;
}

static int request_tostring(lua_State *L)
{
    struct req_view *v = check_view(L);
    struct rill_request *r = view_request(v);
    if (r && (r->req || r->stash))
        lua_pushfstring(L, "rill.request (%s %s)", rill_method_name(v->method),
                        r->req ? evhttp_request_get_uri(r->req) : r->stash->target);
    else
        lua_pushliteral(L, "rill.request (ended)");
    return 1;
}

/* headers["Content-Type"] finds "content-type": names are stored lower-case. */
static int headers_index(lua_State *L)
{
    size_t n;
    const char *k = lua_tolstring(L, 2, &n);
    if (!k || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    luaL_Buffer b;
    char *low = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)k[i]);
    luaL_pushresultsize(&b, n);
    lua_rawget(L, 1);
    return 1;
}

void rill_request_push(lua_State *L, struct rill_request *r)
{
    struct req_view *v = lua_newuserdatauv(L, sizeof *v, 2); /* the cache, the path */
    v->method = evhttp_request_get_command(r->req);
    v->slot = take_slot(r);
    v->serial = r->serial;
    luaL_setmetatable(L, REQUEST_MT);
}

void rill_request_push_route(lua_State *L, struct rill_request *r, int view, const char *path,
                             size_t len)
{
    view = lua_absindex(L, view);
    lua_pushstring(L, rill_method_name(evhttp_request_get_command(r->req)));
    if (path)
        lua_pushlstring(L, path, len);
    else
        push_path(L, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r->req)));
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, view, 2); /* req.path, without decoding it again */
}

void rill_request_detach(struct rill_request *r)
{
    if (!r->slot)
        return;
    live[r->slot - 1] = NULL;
    free_slots[nfree++] = r->slot - 1;
    r->slot = 0;
}

static const luaL_Reg request_meta[] = {
    {"__index", request_index},
    {"__newindex", request_newindex},
    {"__tostring", request_tostring},
    {NULL, NULL},
};

static const luaL_Reg headers_meta[] = {
    {"__index", headers_index},
    {NULL, NULL},
};

/* Registers the metatables, and rill.core.headers(t) which gives any table the lookup. */
static int headers_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, HEADERS_MT);
    return 1;
}

void rill_open_request(lua_State *L)
{
    luaL_newmetatable(L, REQUEST_MT);
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, request_meta, 1); /* the metatable, for check_view */
    lua_pop(L, 1);
    luaL_newmetatable(L, HEADERS_MT);
    luaL_setfuncs(L, headers_meta, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, headers_new);
    lua_setfield(L, -2, "headers");
    lua_pushcfunction(L, core_query);
    lua_setfield(L, -2, "query");
    lua_pushcfunction(L, core_extend_request);
    lua_setfield(L, -2, "extend_request");
}
