/* SPDX-License-Identifier: MIT */
/*
 * The hub's backplane on Redis Streams (--hub redis://...): several rill
 * instances, each with its workers, share one history per topic.
 *
 * Redis orders the events of a topic and its stream ids are the SSE ids. A
 * publish is an XADD (through a script that refuses a closed topic) and the
 * publisher waits for the id. Each process follows only the topics it has
 * subscribers for: a topic's first subscriber here loads its recent
 * history (the newest `history` entries, and one more to know where the
 * history starts), then one reader connection delivers every followed
 * topic live with XREAD BLOCK from the last id it delivered, never `$`. The
 * hub keeps the loaded history as it keeps its own, so that resume is a
 * local lookup and a reconnect storm costs one read per topic, not one per
 * client.
 *
 * Two connections (a blocked XREAD stalls every other command on its
 * connection): `cmd` for publishes, loads and checks, `rd` for XREAD alone.
 * hiredis 0.14 neither reconnects nor times out: any failure tears both
 * down, and they are rebuilt with backoff and jitter; a watchdog fails a
 * connect, a command or a read that takes too long (a half-open TCP
 * connection must not hang the reader). After a reconnect every followed
 * topic is checked (did its key vanish, was it trimmed past what was
 * delivered here?) before the reader resumes it, so that a loss is a gap
 * event in the stream, never silence.
 *
 * hiredis lifecycle rules kept here: a context is freed only from our own
 * timer, never inside its callbacks; the disconnect callback drops our
 * pointer (the context is freed right after it); every command callback is
 * called exactly once, with NULL when the connection failed, and a NULL
 * reply is a failure, never an empty answer.
 */
#include "hub_redis.h"

#include <ctype.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "backplane.h"
#include "effects.h"
#include "log.h"

#define BLOCK_MS        2000 /* how long one XREAD waits: its reply doubles as a liveness check */
#define READ_GRACE      2.0  /* past BLOCK, seconds without the XREAD's reply: the reader is dead */
#define CMD_TIMEOUT     3.0  /* seconds a command may wait for its reply */
#define CONNECT_TIMEOUT 2.0
#define BACKOFF_MIN     0.1
#define BACKOFF_MAX     5.0
#define READ_COUNT      "256"       /* entries per topic per XREAD */
#define MAX_EVENT       (16u << 20) /* a load reads up to history + 1 of them in one reply */
#define IDLE_PING                                                                                  \
    10.0 /* seconds: a connection with nothing to do sends a PING (Redis's timeout)                \
          */
#define UNBLOCK_RETRIES 50
#define BUCKETS         1024

/*
 * Scripts, so that a check and an append are one step: publish and the
 * control entries refuse a closed topic (its newest entry is the close
 * marker), and every entry names the one before it (rill-prev), so that a
 * reader that finds its predecessor newer than what it delivered knows
 * entries were trimmed before it read them; bounds gives a topic's first
 * and last ids ("" when none).
 */
static const char PUBLISH_LUA[] =
    "local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "if top[1] and top[1][2][1] == 'rill-close' then return redis.error_reply('RILLCLOSED') end\n"
    "local prev = top[1] and top[1][1] or '0-0'\n"
    "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], 'rill-prev', prev, "
    "unpack(ARGV, 3))\n";
static const char CONTROL_LUA[] =
    "local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "if top[1] and top[1][2][1] == 'rill-close' then return 0 end\n"
    "local prev = top[1] and top[1][1] or '0-0'\n"
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[2], ARGV[3], 'rill-prev', "
    "prev)\n"
    "return 1\n";
static const char BOUNDS_LUA[] =
    "local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "local l = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "return {f[1] and f[1][1] or '', l[1] and l[1][1] or ''}\n";

/* ---- state ------------------------------------------------------------------------- */

struct conn {
    redisAsyncContext *ac; /* NULL once hiredis freed it (or before it exists) */
    int connected;
    int pending;       /* replies awaited */
    double progress;   /* when the last reply (or bytes of one) came, or pending went 0 → 1 */
    size_t bytes_seen; /* the reader's buffer position, to see bytes arrive */
};

enum follow_state {
    F_LOAD,     /* to load (first time) when connected */
    F_LOADING,  /* its load is in flight */
    F_CHECK,    /* to check after a reconnect, before it is read again */
    F_CHECKING, /* its check is in flight */
    F_LIVE,     /* read by the reader from last */
    F_BROKEN,   /* its key is not a stream: not read */
};

/* A topic followed here: it has subscribers in this process. */
struct follow {
    char *name, *key;
    size_t key_len;
    struct follow *next_in_bucket, *prev, *next;
    enum follow_state state;
    int fresh;               /* nothing loaded yet: the first load sets where its history starts */
    int reload;              /* a load was asked while LIVE (a Last-Event-ID newer than last) */
    int reloading;           /* that load is in flight */
    uint64_t gen;            /* tells this follow from a later one of the same name */
    uint64_t last[2];        /* the newest id delivered here (0-0: none) */
    char last_str[48];       /* the same, as Redis spells it */
    char epoch[8];           /* the hub's incarnation of it */
    uint64_t seq;            /* the hub's count of its events here */
    uint64_t quiet_until[2]; /* entries up to it are of a past (restored) incarnation: no control */
    /*
     * After a reconnect's check: the first entry Redis keeps (check_first
     * set), for the first entry read next when it has no rill-prev (another
     * program wrote it); after a reset, that entry is no hole (the reset
     * said it already).
     */
    uint64_t check_first[2];
    int check_first_set, no_hole_once;
    int busy; /* deliveries in progress: a subscriber's __gc may unfollow it meanwhile */
    int gone; /* unfollowed while busy: freed when the last delivery returns */
};

enum op_kind { OP_PUBLISH, OP_CLOSE, OP_CONTROL, OP_LOAD, OP_CHECK, OP_HANDSHAKE, OP_UNBLOCK };

/* A command in flight on cmd; its callback frees it. */
struct op {
    enum op_kind kind;
    struct op *prev, *next; /* every op in flight: forget finds the waiter's */
    rill_backplane_done done;
    void *arg; /* the waiter, NULL once forgotten */
    char *topic;
    uint64_t gen;
};

static struct redis {
    struct rill_backplane bp; /* first member */
    struct rill_worker *w;
    struct rill_redis_url url;
    char *prefix;
    size_t prefix_len;
    struct conn cmd, rd;
    enum { DOWN, CONNECTING, UP } state;
    int handshake; /* replies the handshake still waits for */
    long long reader_id;
    int started, first_done, stopping, teardown_pending;
    struct event *retry_ev, *watchdog_ev, *teardown_ev;
    double connect_started, backoff;
    long reconnects, connects, loads;
    char last_error[256];
    struct follow *buckets[BUCKETS], *follows;
    long nfollows;
    uint64_t gens;
    unsigned epochs;
    int reading, unblock_sent, unblock_tries, unblock_refused;
    unsigned long read_gen, unblock_gen; /* XREADs sent; the one an UNBLOCK was for */
    struct event *unblock_ev;
    double read_sent;
    struct op *ops;
    size_t history;
    char origin[32]; /* this process, on the disconnect entries it writes */
    double lag;      /* at the last live delivery: its arrival minus its id's time */
} R;

/* This process's reconnections, kept past rill_hub_redis_stop for the metrics' last copy. */
static long reconnects_total;

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void note_error(const char *what, const char *detail)
{
    snprintf(R.last_error, sizeof R.last_error, "%s%s%s", what, detail ? ": " : "",
             detail ? detail : "");
}

/* ---- follows ------------------------------------------------------------------------ */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static struct follow *find_follow(const char *name)
{
    for (struct follow *f = R.buckets[hash(name)]; f; f = f->next_in_bucket)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* The follow an op was sent for, if it is still the same one. */
static struct follow *op_follow(const struct op *op)
{
    struct follow *f = op->topic ? find_follow(op->topic) : NULL;
    return f && f->gen == op->gen ? f : NULL;
}

static void set_last(struct follow *f, const uint64_t id[2])
{
    memcpy(f->last, id, sizeof f->last);
    snprintf(f->last_str, sizeof f->last_str, "%llu-%llu", (unsigned long long)id[0],
             (unsigned long long)id[1]);
}

static void new_epoch(struct follow *f)
{
    snprintf(f->epoch, sizeof f->epoch, "r%x", ++R.epochs & 0xffffff);
}

static struct follow *add_follow(const char *name)
{
    struct follow *f = calloc(1, sizeof *f);
    size_t len = strlen(name);
    if (!f || !(f->name = strdup(name)) || !(f->key = malloc(R.prefix_len + len + 1))) {
        if (f)
            free(f->name);
        free(f);
        return NULL;
    }
    memcpy(f->key, R.prefix, R.prefix_len);
    memcpy(f->key + R.prefix_len, name, len + 1);
    f->key_len = R.prefix_len + len;
    f->state = F_LOAD;
    f->fresh = 1;
    f->gen = ++R.gens;
    set_last(f, (uint64_t[2]){0, 0});
    unsigned b = hash(name);
    f->next_in_bucket = R.buckets[b];
    R.buckets[b] = f;
    f->next = R.follows;
    if (R.follows)
        R.follows->prev = f;
    R.follows = f;
    R.nfollows++;
    return f;
}

/* Unlinks f (no reply finds it any more) and frees it, or marks it gone while it is busy. */
static void free_follow(struct follow *f)
{
    struct follow **p = &R.buckets[hash(f->name)];
    while (*p != f)
        p = &(*p)->next_in_bucket;
    *p = f->next_in_bucket;
    if (f->prev)
        f->prev->next = f->next;
    else
        R.follows = f->next;
    if (f->next)
        f->next->prev = f->prev;
    R.nfollows--;
    f->gone = 1;
    if (f->busy)
        return;
    free(f->name);
    free(f->key);
    free(f);
}

/* Around calls into the hub, which may unfollow f: hold, then release (1 if f is still there). */
static void hold(struct follow *f)
{
    f->busy++;
}

static int release(struct follow *f)
{
    if (--f->busy > 0 || !f->gone)
        return !f->gone;
    free(f->name);
    free(f->key);
    free(f);
    return 0;
}

/* ---- commands ------------------------------------------------------------------------ */

static struct op *op_new(enum op_kind kind, const char *topic, uint64_t gen)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op || (topic && !(op->topic = strdup(topic)))) {
        free(op);
        return NULL;
    }
    op->kind = kind;
    op->gen = gen;
    op->next = R.ops;
    if (R.ops)
        R.ops->prev = op;
    R.ops = op;
    return op;
}

static void op_free(struct op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        R.ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    free(op->topic);
    free(op);
}

/* A reply arrived on c (or its failure): the watchdog sees progress. */
static struct conn *replied(const redisAsyncContext *ac)
{
    struct conn *c = ac->data;
    c->pending--;
    c->progress = now();
    return c;
}

/* Sends a command on c; -1 (and fn is never called) when c cannot take it. */
static int send_argv(struct conn *c, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                     const size_t *lens)
{
    if (!c->ac || redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return -1;
    if (c->pending++ == 0)
        c->progress = now();
    return 0;
}

static void schedule_teardown(void);

/* "redis unavailable: <why>" for a command whose connection failed. */
static const char *unavailable(char *buf, size_t cap)
{
    snprintf(buf, cap, "redis unavailable: %s", R.last_error[0] ? R.last_error : "not connected");
    return buf;
}

/* A NULL reply: the connection failed under the command. */
static void lost_connection(const redisAsyncContext *ac)
{
    if (R.state == DOWN)
        return; /* torn down already: the first error said why */
    if (ac->err && ac->errstr[0])
        note_error("connection lost", ac->errstr);
    else if (!R.last_error[0])
        note_error("connection lost", NULL);
    schedule_teardown();
}

/* ---- publish, close, disconnect -------------------------------------------------------- */

static void answer(struct op *op, const struct rill_backplane_reply *reply)
{
    if (op->arg)
        op->done(op->arg, reply);
}

/* Redis served a command: the next failure starts the backoff from its shortest again. */
static void served(void)
{
    R.backoff = 0;
}

/* An error that says Redis cannot serve now (loading, a busy script, a replica), not "no". */
static int redis_busy(const char *msg)
{
    static const char *const busy[] = {"LOADING",  "BUSY",     "MASTERDOWN",
                                       "READONLY", "TRYAGAIN", "CLUSTERDOWN"};
    for (size_t i = 0; i < sizeof busy / sizeof busy[0]; i++)
        if (strstr(msg, busy[i])) /* anywhere: before Redis 7, a script's error is wrapped */
            return 1;
    return 0;
}

static void on_append(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    struct op *op = priv;
    struct rill_backplane_reply out = {0};
    char buf[512];
    replied(ac);
    if (!reply) {
        lost_connection(ac);
        out.err = unavailable(buf, sizeof buf);
        out.code = "unavailable";
    } else if (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "RILLCLOSED")) {
        snprintf(buf, sizeof buf, "topic '%s' is closed", op->topic);
        out.err = buf;
    } else if (reply->type == REDIS_REPLY_ERROR && redis_busy(reply->str)) {
        snprintf(buf, sizeof buf, "redis unavailable: %s", reply->str);
        out.err = buf;
        out.code = "unavailable";
    } else if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(buf, sizeof buf, "redis: %s", reply->str);
        out.err = buf;
        out.code = "error";
    } else if (op->kind == OP_PUBLISH && reply->type == REDIS_REPLY_STRING) {
        served();
        out.id = reply->str;
    } else if (op->kind != OP_PUBLISH && reply->type == REDIS_REPLY_INTEGER) {
        out.id = "true";
    } else {
        out.err = "redis: an unexpected reply";
        out.code = "error";
    }
    if (op->kind != OP_CONTROL)
        answer(op, &out);
    op_free(op);
}

/* Answers done at once: Redis is not there. */
static enum rill_bp_status refuse_now(rill_backplane_done done, void *arg, const char *err,
                                      const char *code)
{
    struct rill_backplane_reply reply = {NULL, err, code};
    done(arg, &reply);
    return RILL_BP_DONE;
}

/* Pushes the field of the table at idx as a string, or nothing: 1 if pushed. */
static int push_field(lua_State *L, int idx, const char *name)
{
    int t = lua_getfield(L, idx, name);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        lua_tostring(L, -1); /* a number becomes its string in its own slot */
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

static enum rill_bp_status redis_publish(struct rill_backplane *bp, const struct rill_publish *p,
                                         rill_backplane_done done, void *arg)
{
    static const char *const names[] = {"event", "data", "retry"};
    const char *argv[16];
    size_t lens[16];
    char buf[512], maxlen[32];
    uint64_t id[2];
    lua_State *L = p->L;
    int argc = 0, top = lua_gettop(L);
    (void)bp;
    if (R.state != UP)
        return refuse_now(done, arg, unavailable(buf, sizeof buf), "unavailable");
    if (p->id && !rill_stream_id_parse(p->id, p->id_len, id)) {
        snprintf(buf, sizeof buf,
                 "hub: with --hub redis an event's id is a stream id (<ms>-<seq>), got '%.128s'",
                 p->id);
        return refuse_now(done, arg, buf, "error");
    }
    if (p->prefix_len + p->suffix_len > MAX_EVENT) {
        snprintf(buf, sizeof buf, "hub: an event of %zu bytes is too large (at most %u)",
                 p->prefix_len + p->suffix_len, MAX_EVENT);
        return refuse_now(done, arg, buf, "error");
    }
    struct op *op = op_new(OP_PUBLISH, p->topic, 0);
    if (!op)
        return refuse_now(done, arg, "hub: out of memory", "error");
    op->done = done;
    op->arg = arg;
    snprintf(maxlen, sizeof maxlen, "%zu", R.history);
    const char *head[] = {"EVAL", PUBLISH_LUA, "1", NULL, maxlen, p->id ? p->id : "*"};
    size_t head_lens[] = {4, sizeof PUBLISH_LUA - 1, 1, 0, strlen(maxlen), p->id ? p->id_len : 1};
    for (; argc < 6; argc++) {
        argv[argc] = head[argc];
        lens[argc] = head_lens[argc];
    }
    char *key = malloc(R.prefix_len + strlen(p->topic) + 1);
    if (!key) {
        op_free(op);
        return refuse_now(done, arg, "hub: out of memory", "error");
    }
    lens[3] = (size_t)sprintf(key, "%s%s", R.prefix, p->topic);
    argv[3] = key;
    for (int i = 0; i < 3; i++) {
        if (!push_field(L, p->fields_idx, names[i]))
            continue;
        argv[argc] = names[i];
        lens[argc++] = strlen(names[i]);
        argv[argc] = lua_tolstring(L, -1, &lens[argc]);
        argc++;
    }
    if (p->trace) { /* with --log-level debug: every process's delivery line names it */
        argv[argc] = "rill-trace";
        lens[argc++] = 10;
        argv[argc] = p->trace;
        lens[argc++] = strlen(p->trace);
    }
    int rc = send_argv(&R.cmd, on_append, op, argc, argv, lens);
    lua_settop(L, top);
    free(key);
    if (rc != 0) {
        op_free(op);
        return refuse_now(done, arg, unavailable(buf, sizeof buf), "unavailable");
    }
    return RILL_BP_PENDING;
}

/* A control entry (rill-close, rill-disconnect) through CONTROL_LUA; op answered on reply. */
static int send_control(struct op *op, const char *topic, const char *field, const char *value)
{
    char maxlen[32];
    snprintf(maxlen, sizeof maxlen, "%zu", R.history);
    size_t klen = R.prefix_len + strlen(topic);
    char *key = malloc(klen + 1);
    if (!key)
        return -1;
    sprintf(key, "%s%s", R.prefix, topic);
    const char *argv[] = {"EVAL", CONTROL_LUA, "1", key, maxlen, field, value};
    size_t lens[] = {
        4, sizeof CONTROL_LUA - 1, 1, klen, strlen(maxlen), strlen(field), strlen(value)};
    int rc = send_argv(&R.cmd, on_append, op, 7, argv, lens);
    free(key);
    return rc;
}

static enum rill_bp_status redis_close(struct rill_backplane *bp, lua_State *L, const char *topic,
                                       rill_backplane_done done, void *arg)
{
    char buf[512];
    (void)bp, (void)L;
    if (R.state != UP)
        return refuse_now(done, arg, unavailable(buf, sizeof buf), "unavailable");
    struct op *op = op_new(OP_CLOSE, topic, 0);
    if (!op)
        return refuse_now(done, arg, "hub: out of memory", "error");
    op->done = done;
    op->arg = arg;
    if (send_control(op, topic, "rill-close", "1") != 0) {
        op_free(op);
        return refuse_now(done, arg, unavailable(buf, sizeof buf), "unavailable");
    }
    return RILL_BP_PENDING;
}

/* hub.disconnect: an entry the other processes act on (this one did it already). */
static void redis_disconnect(struct rill_backplane *bp, const char *topic)
{
    (void)bp;
    struct op *op = R.state == UP ? op_new(OP_CONTROL, topic, 0) : NULL;
    if (op && send_control(op, topic, "rill-disconnect", R.origin) != 0)
        op_free(op);
}

static void redis_configure(struct rill_backplane *bp, const struct rill_hub_bounds *b)
{
    (void)bp;
    R.history = b->history;
}

static void redis_forget(struct rill_backplane *bp, void *arg)
{
    (void)bp;
    for (struct op *op = R.ops; op; op = op->next)
        if (op->arg == arg)
            op->arg = NULL;
}

/* ---- delivering entries to the hub ------------------------------------------------------ */

/* The value of field name in an entry's field/value array, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields && i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) &&
            memcmp(k->str, name, k->len) == 0 && fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    }
    return NULL;
}

static void set_string(lua_State *L, const redisReply *v, const char *name)
{
    if (!v)
        return;
    lua_pushlstring(L, v->str, v->len);
    lua_setfield(L, -2, name);
}

/*
 * The event name of an entry: one line in SSE, so a line break (which
 * another program's XADD may hold) becomes a space rather than start
 * another field or lose the event.
 */
static void set_event(lua_State *L, const redisReply *v)
{
    if (!v)
        return;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, v->len);
    for (size_t i = 0; i < v->len; i++)
        p[i] = v->str[i] == '\r' || v->str[i] == '\n' ? ' ' : v->str[i];
    luaL_pushresultsize(&b, v->len);
    lua_setfield(L, -2, "event");
}

struct delivery_ctx {
    struct follow *f;
    const redisReply *entry;
    uint64_t id[2];
    int live;         /* read now, not loaded from the history: a disconnect entry acts */
    int hole;         /* entries between what was delivered and this one were trimmed */
    uint64_t prev[2]; /* then: this entry's predecessor (rill-prev) */
    double at;        /* when it was published, as far as this process can tell */
};

/*
 * One entry to the hub (called protected): an event for its subscribers,
 * the close marker, or another process's hub.disconnect. Its wire is
 * rill.sse.encode's, so that an entry another program XADDed (fields
 * event, data, retry) reads the same as one rill published.
 */
static int deliver_entry(lua_State *L)
{
    struct delivery_ctx *ctx = lua_touserdata(L, 1);
    struct follow *f = ctx->f;
    const redisReply *id = ctx->entry->element[0], *fields = ctx->entry->element[1];
    if (fields->type != REDIS_REPLY_ARRAY)
        fields = NULL;
    if (ctx->hole)
        rill_hub_deliver_lost(L, f->name, ctx->prev);
    if (entry_field(fields, "rill-close")) {
        rill_hub_deliver_close(L, f->name);
        return 0;
    }
    const redisReply *origin = entry_field(fields, "rill-disconnect");
    if (origin) {
        if (ctx->live &&
            (origin->len != strlen(R.origin) || memcmp(origin->str, R.origin, origin->len)))
            rill_hub_deliver_disconnect(f->name);
        return 0;
    }
    lua_createtable(L, 0, 4); /* 2: the fields subscribers read */
    set_event(L, entry_field(fields, "event"));
    set_string(L, entry_field(fields, "data"), "data");
    const redisReply *retry = entry_field(fields, "retry");
    if (retry && lua_stringtonumber(L, retry->str) != 0) {
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
            lua_setfield(L, -2, "retry");
        else
            lua_pop(L, 1); /* not milliseconds: left out, as a browser would ignore it */
    }
    lua_pushlstring(L, id->str, id->len);
    lua_setfield(L, -2, "id");
    lua_pushcfunction(L, rill_sse_encode);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1); /* 3: the wire */
    size_t wire_len;
    const char *wire = lua_tolstring(L, 3, &wire_len);
    const redisReply *trace = entry_field(fields, "rill-trace");
    char tbuf[64] = "";
    if (trace && trace->len < sizeof tbuf)
        memcpy(tbuf, trace->str, trace->len);
    struct rill_hub_delivery d = {f->name,  f->epoch, ++f->seq,
                                  id->str,  id->len,  wire,
                                  wire_len, ctx->at,  tbuf[0] ? tbuf : NULL};
    if (f->gone)
        return 0; /* an allocation's GC step closed its last subscriber: not followed now */
    lua_pushvalue(L, 2);
    char safe[256];
    if (rill_hub_deliver(L, &d) != 0)
        rill_log_at(RILL_LOG_WARN, "hub: no room for topic '%s' here (max_topics): event %s lost",
                    rill_log_safe(f->name, safe, sizeof safe), id->str);
    return 0;
}

/* Runs fn(ctx) protected: a delivery may run out of memory, which must not unwind the loop. */
static void protected(lua_CFunction fn, void *ctx)
{
    lua_State *L = R.w->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ctx);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        rill_log_at(RILL_LOG_ERROR, "hub: an event from redis was lost here: %s",
                    lua_tostring(L, -1));
    lua_settop(L, top);
}

/* An entry of an XREAD or XRANGE reply as [id, [field, value, ...]], with its id parsed. */
static int entry_ok(const redisReply *e, uint64_t id[2])
{
    return e && e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
           e->element[0]->type == REDIS_REPLY_STRING &&
           rill_stream_id_parse(e->element[0]->str, e->element[0]->len, id);
}

/*
 * Delivers entry e of f if it is newer than what f delivered (a reload and
 * the reader overlap); the caller holds f. 0 once f is gone.
 */
static int deliver(struct follow *f, const redisReply *e, int live)
{
    struct delivery_ctx ctx = {f, e, {0, 0}, live, 0, {0, 0}, 0};
    if (f->gone)
        return 0;
    if (!entry_ok(e, ctx.id) || rill_stream_id_cmp(ctx.id, f->last) <= 0)
        return 1;
    const redisReply *fields = e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1] : NULL;
    const redisReply *prev = entry_field(fields, "rill-prev");
    /* a rill-prev at or after the entry itself is no predecessor (another program's) */
    int has_prev = prev && rill_stream_id_parse(prev->str, prev->len, ctx.prev) &&
                   rill_stream_id_cmp(ctx.prev, ctx.id) < 0;
    if (has_prev) {
        ctx.hole = rill_stream_id_cmp(ctx.prev, f->last) > 0;
    } else if (f->check_first_set && rill_stream_id_cmp(f->check_first, f->last) > 0) {
        ctx.hole = 1; /* no rill-prev: the check's first entry is all there is to go by */
        ctx.prev[0] = f->check_first[0] - (f->check_first[1] == 0);
        ctx.prev[1] = f->check_first[1] == 0 ? UINT64_MAX : f->check_first[1] - 1;
    }
    if (f->no_hole_once)
        ctx.hole = 0;
    f->check_first_set = f->no_hole_once = 0;
    /*
     * Its id's time is Redis's clock, or a publisher's own id: for the
     * history's age, never later than now, and live events are new.
     */
    double t = now(), id_time = (double)ctx.id[0] / 1000;
    ctx.at = live || id_time > t ? t : id_time;
    ctx.live = live && rill_stream_id_cmp(ctx.id, f->quiet_until) > 0;
    set_last(f, ctx.id);
    protected(deliver_entry, &ctx);
    return !f->gone;
}

/* ---- the reader ------------------------------------------------------------------------- */

static void on_read(redisAsyncContext *ac, void *r, void *priv);

/* XREAD BLOCK from every live topic's last id; nothing when none is live. */
static void start_read(void)
{
    if (R.state != UP || R.reading || !R.rd.ac)
        return;
    size_t n = 0;
    for (struct follow *f = R.follows; f; f = f->next)
        n += f->state == F_LIVE;
    if (n == 0)
        return;
    size_t argc = 6 + 2 * n;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        note_error("out of memory", NULL);
        schedule_teardown();
        return;
    }
    const char *head[] = {"XREAD", "BLOCK", NULL, "COUNT", READ_COUNT, "STREAMS"};
    char block[16];
    snprintf(block, sizeof block, "%d", BLOCK_MS);
    head[2] = block;
    for (size_t i = 0; i < 6; i++) {
        argv[i] = head[i];
        lens[i] = strlen(head[i]);
    }
    size_t k = 6;
    for (struct follow *f = R.follows; f; f = f->next) {
        if (f->state != F_LIVE)
            continue;
        argv[k] = f->key;
        lens[k] = f->key_len;
        argv[k + n] = f->last_str;
        lens[k + n] = strlen(f->last_str);
        k++;
    }
    if (send_argv(&R.rd, on_read, NULL, (int)argc, argv, lens) == 0) {
        R.reading = 1;
        R.read_sent = now();
        R.read_gen++;
        R.unblock_tries = 0;
    }
    free(argv);
    free(lens);
}

static void readers_changed(void);

/*
 * The reply to a command whose op carries nothing more: the op freed, the
 * watchdog told; NULL when the connection failed under it (a teardown is
 * on its way).
 */
static redisReply *take_reply(redisAsyncContext *ac, void *r, struct op *op)
{
    replied(ac);
    op_free(op);
    if (!r)
        lost_connection(ac);
    return r;
}

static void on_unblock_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    readers_changed();
}

/*
 * CLIENT UNBLOCK's answer: 0 when the reader was not blocked yet (its XREAD
 * was still on its way), so the XREAD with the old set may block for its
 * whole time: try again shortly, a bounded number of times per XREAD.
 */
static void on_unblocked(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = take_reply(ac, r, priv);
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR && !redis_busy(reply->str) && !R.unblock_refused) {
        R.unblock_refused = 1; /* an ACL without CLIENT: new topics wait up to a block time */
        rill_log_at(RILL_LOG_WARN,
                    "hub: redis refused CLIENT UNBLOCK (%s): new topics are read "
                    "within %d ms",
                    reply->str, BLOCK_MS);
    }
    /* the XREAD it was for is still the one blocked: once more, shortly */
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && R.reading &&
        R.unblock_gen == R.read_gen && R.unblock_tries++ < UNBLOCK_RETRIES) {
        R.unblock_sent = 0;
        struct timeval soon = {0, 5000};
        evtimer_add(R.unblock_ev, &soon);
    }
}

/* The set of live topics changed: a blocked XREAD is woken (CLIENT UNBLOCK) to read it anew. */
static void readers_changed(void)
{
    if (R.state != UP)
        return;
    if (!R.reading) {
        start_read();
        return;
    }
    if (R.unblock_sent || R.unblock_refused)
        return;
    char id[32];
    snprintf(id, sizeof id, "%lld", R.reader_id);
    const char *argv[] = {"CLIENT", "UNBLOCK", id};
    size_t lens[] = {6, 7, strlen(id)};
    struct op *op = op_new(OP_UNBLOCK, NULL, 0);
    if (op && send_argv(&R.cmd, on_unblocked, op, 3, argv, lens) == 0) {
        R.unblock_sent = 1;
        R.unblock_gen = R.read_gen;
    } else if (op)
        op_free(op);
}

static struct follow *follow_of_key(const redisReply *key)
{
    if (key->type != REDIS_REPLY_STRING || key->len < R.prefix_len ||
        memcmp(key->str, R.prefix, R.prefix_len) != 0)
        return NULL;
    return find_follow(key->str + R.prefix_len);
}

/* XREAD's reply: [[key, [entry...]]...], or nil (it timed out, or CLIENT UNBLOCK woke it). */
static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)priv;
    replied(ac);
    R.reading = 0;
    R.unblock_sent = 0;
    evtimer_del(R.unblock_ev); /* a retry for the XREAD that just answered */
    if (!reply) {
        lost_connection(ac);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rill_log_at(RILL_LOG_ERROR, "hub: redis refused the reader's XREAD: %s", reply->str);
        note_error("XREAD", reply->str);
        schedule_teardown();
        return;
    }
    served();
    double at = now();
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
            continue;
        struct follow *f = follow_of_key(s->element[0]);
        const redisReply *entries = s->element[1];
        if (!f || f->state != F_LIVE || entries->type != REDIS_REPLY_ARRAY)
            continue;
        hold(f);
        for (size_t j = 0; j < entries->elements && deliver(f, entries->element[j], 1); j++)
            ;
        if (!f->gone && f->last[0])
            R.lag = at - (double)f->last[0] / 1000;
        release(f);
    }
    start_read();
}

/* ---- loads and checks ----------------------------------------------------------------- */

static void on_load(redisAsyncContext *ac, void *r, void *priv);
static void on_check(redisAsyncContext *ac, void *r, void *priv);

/*
 * The first load: the newest history + 1 entries (the extra one only says
 * where the history starts). A reload (a Last-Event-ID newer than last):
 * what came after last, which the reader has not delivered yet.
 */
static void send_load(struct follow *f)
{
    char count[32], from[64];
    struct op *op = op_new(OP_LOAD, f->name, f->gen);
    if (!op)
        return;
    snprintf(count, sizeof count, "%zu", R.history + 1);
    int rc;
    if (f->fresh) {
        const char *argv[] = {"XREVRANGE", f->key, "+", "-", "COUNT", count};
        size_t lens[] = {9, f->key_len, 1, 1, 5, strlen(count)};
        rc = send_argv(&R.cmd, on_load, op, 6, argv, lens);
    } else {
        uint64_t next[2] = {f->last[0], f->last[1] + 1}; /* the least id after last */
        if (f->last[1] == UINT64_MAX)
            next[0]++, next[1] = 0;
        snprintf(from, sizeof from, "%llu-%llu", (unsigned long long)next[0],
                 (unsigned long long)next[1]);
        const char *argv[] = {"XRANGE", f->key, from, "+", "COUNT", count};
        size_t lens[] = {6, f->key_len, strlen(from), 1, 5, strlen(count)};
        rc = send_argv(&R.cmd, on_load, op, 6, argv, lens);
    }
    if (rc != 0) {
        op_free(op);
        return;
    }
    if (f->fresh)
        f->state = F_LOADING;
    else
        f->reloading = 1;
    f->reload = 0;
    R.loads++;
}

static void send_check(struct follow *f)
{
    struct op *op = op_new(OP_CHECK, f->name, f->gen);
    if (!op)
        return;
    const char *argv[] = {"EVAL", BOUNDS_LUA, "1", f->key};
    size_t lens[] = {4, sizeof BOUNDS_LUA - 1, 1, f->key_len};
    if (send_argv(&R.cmd, on_check, op, 4, argv, lens) != 0) {
        op_free(op);
        return;
    }
    f->state = F_CHECKING;
}

/* What a follow needs once connected. */
static void resume_follow(struct follow *f)
{
    if (f->state == F_LOAD)
        send_load(f);
    else if (f->state == F_CHECK)
        send_check(f);
    else if (f->state == F_LIVE && f->reload && !f->reloading)
        send_load(f);
}

struct load_ctx {
    struct follow *f;
    const redisReply *reply;
};

/* The first load: the hub's history restarts with what Redis has, newest last. */
static int apply_first_load(lua_State *L)
{
    struct load_ctx *ctx = lua_touserdata(L, 1);
    struct follow *f = ctx->f;
    const redisReply *r = ctx->reply;
    uint64_t id[2];
    size_t n = r->elements, from = n;
    const char *floor = NULL;
    if (n == R.history + 1 && entry_ok(r->element[n - 1], id)) {
        floor = r->element[n - 1]->element[0]->str; /* it only says where the history starts */
        from = n - 1;
    }
    new_epoch(f);
    f->seq = 0;
    rill_hub_deliver_reset(L, f->name, f->epoch, floor, 0);
    if (floor)
        set_last(f, id);
    for (size_t i = from; i-- > 0;)
        if (!deliver(f, r->element[i], 0))
            return 0; /* its last subscriber went: no more */
    f->fresh = 0;
    rill_hub_deliver_loaded(L, f->name);
    return 0;
}

/* A reload: what came after last, oldest first. */
static int apply_reload(lua_State *L)
{
    struct load_ctx *ctx = lua_touserdata(L, 1);
    struct follow *f = ctx->f;
    for (size_t i = 0; i < ctx->reply->elements; i++)
        if (!deliver(f, ctx->reply->element[i], 1))
            return 0;
    rill_hub_deliver_loaded(L, f->name);
    return 0;
}

static int cut_subscribers(lua_State *L)
{
    struct follow *f = lua_touserdata(L, 1);
    rill_hub_deliver_disconnect(f->name); /* first: the load's end below resumes none of them */
    rill_hub_deliver_loaded(L, f->name);
    rill_hub_deliver_unloaded(L, f->name); /* a later subscriber reads it again */
    return 0;
}

/*
 * An error reply that will not go away by itself (WRONGTYPE, NOPERM...), as
 * opposed to Redis not serving now (LOADING, BUSY...), which is retried.
 */
static int about_the_key(const redisReply *reply)
{
    return reply->type != REDIS_REPLY_ERROR || !redis_busy(reply->str);
}

/* Redis answered a load or check with an error of its own: reconnect (with backoff), retry. */
static void retry_later(struct follow *f, const char *what, const redisReply *reply)
{
    char safe[256];
    rill_log_at(RILL_LOG_WARN, "hub: topic '%s' could not be %s in redis: %s: retrying",
                rill_log_safe(f->name, safe, sizeof safe), what, reply->str);
    note_error(what, reply->str);
    schedule_teardown(); /* the teardown sets what f needs once connected again */
}

/*
 * The topic's key is not a stream (another program wrote something else
 * there): it is not read, and its subscribers here are cut, the log saying
 * why; a later subscriber tries again.
 */
static void broken(struct follow *f, const char *what, const redisReply *reply)
{
    char safe[256], safe_key[256];
    rill_log_at(RILL_LOG_ERROR, "hub: topic '%s' cannot be %s in redis (key %s): %s",
                rill_log_safe(f->name, safe, sizeof safe), what,
                rill_log_safe(f->key, safe_key, sizeof safe_key),
                reply->type == REDIS_REPLY_ERROR ? reply->str : "not a stream");
    f->state = F_BROKEN;
    f->reloading = f->reload = 0;
    hold(f);
    protected(cut_subscribers, f);
    release(f);
}

/*
 * The reply to a load or check, and the follow it was for (op freed): NULL
 * when the connection failed (the teardown sets what f needs once
 * reconnected) or the topic is not followed any more.
 */
static redisReply *take_follow_reply(redisAsyncContext *ac, void *r, struct op *op,
                                     struct follow **f)
{
    *f = op_follow(op);
    redisReply *reply = take_reply(ac, r, op);
    return *f ? reply : NULL;
}

static void on_load(redisAsyncContext *ac, void *r, void *priv)
{
    struct follow *f;
    redisReply *reply = take_follow_reply(ac, r, priv, &f);
    if (!reply)
        return;
    int first = f->fresh;
    if (reply->type != REDIS_REPLY_ARRAY) {
        if (about_the_key(reply))
            broken(f, "read", reply); /* its reload, if it was one, is moot */
        else
            retry_later(f, "read", reply); /* the teardown turns reloading into reload */
        return;
    }
    f->reloading = 0;
    served();
    struct load_ctx ctx = {f, reply};
    hold(f);
    protected(first ? apply_first_load : apply_reload, &ctx);
    if (!release(f))
        return;
    if (first && !f->fresh) {
        f->state = F_LIVE;
        readers_changed();
    } else if (first) { /* the load could not be applied (memory): once more */
        f->state = F_LOAD;
    }
    resume_follow(f);
}

/*
 * After a reconnect, before f is read again: a key that vanished (Redis
 * restarted empty, or it was deleted) or whose last id is older than what
 * was delivered here is another incarnation: the hub's history restarts,
 * anything up to last is a gap, and it is read from its beginning. A first
 * entry newer than last means entries were trimmed before this process
 * read them: the hub tells subscribers they may have missed some.
 */
static int apply_check(lua_State *L)
{
    char safe[256];
    struct load_ctx *ctx = lua_touserdata(L, 1);
    struct follow *f = ctx->f;
    const redisReply *r = ctx->reply;
    uint64_t first[2], last[2];
    int has_first = rill_stream_id_parse(r->element[0]->str, r->element[0]->len, first);
    int has_last = rill_stream_id_parse(r->element[1]->str, r->element[1]->len, last);
    if (!f->last[0] && !f->last[1])
        return 0; /* nothing delivered yet: nothing to lose */
    if (!has_last || rill_stream_id_cmp(last, f->last) < 0) {
        rill_log_at(RILL_LOG_WARN,
                    "hub: topic '%s' is gone from redis or older than what was delivered (%s): "
                    "its subscribers get a gap",
                    rill_log_safe(f->name, safe, sizeof safe), f->last_str);
        new_epoch(f);
        f->seq = 0;
        rill_hub_deliver_reset(L, f->name, f->epoch, f->last_str, 1);
        set_last(f, (uint64_t[2]){0, 0});
        /* what is there now is read from its start: its old control entries do nothing */
        memcpy(f->quiet_until, has_last ? last : (uint64_t[2]){0, 0}, sizeof f->quiet_until);
        f->no_hole_once = 1;
    } else if (has_first && rill_stream_id_cmp(first, f->last) > 0) {
        /*
         * Entries up to first may have been trimmed before this process read
         * them: the reader reads first next (it is after last), and its
         * rill-prev (or, without one, first itself) tells.
         */
        memcpy(f->check_first, first, sizeof f->check_first);
        f->check_first_set = 1;
    }
    return 0;
}

static void on_check(redisAsyncContext *ac, void *r, void *priv)
{
    struct follow *f;
    redisReply *reply = take_follow_reply(ac, r, priv, &f);
    if (!reply)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        if (about_the_key(reply))
            broken(f, "checked", reply);
        else
            retry_later(f, "checked", reply);
        return;
    }
    served();
    struct load_ctx ctx = {f, reply};
    hold(f);
    protected(apply_check, &ctx);
    if (!release(f))
        return;
    f->state = F_LIVE;
    readers_changed();
    resume_follow(f);
}

static void redis_load(struct rill_backplane *bp, const char *topic)
{
    (void)bp;
    struct follow *f = find_follow(topic);
    if (!f && !(f = add_follow(topic))) {
        char safe[256];
        rill_log_at(RILL_LOG_ERROR, "hub: out of memory following topic '%s'",
                    rill_log_safe(topic, safe, sizeof safe));
        return;
    }
    if (f->state == F_BROKEN) { /* its key may be a stream now: read it afresh */
        f->state = F_LOAD;
        f->fresh = 1;
        f->reload = 0;
        set_last(f, (uint64_t[2]){0, 0});
        memset(f->quiet_until, 0, sizeof f->quiet_until);
    } else if (f->state != F_LOAD) {
        f->reload = 1; /* a Last-Event-ID newer than what was delivered (or a load in flight) */
    }
    if (R.state == UP)
        resume_follow(f);
}

static void redis_unfollow(struct rill_backplane *bp, const char *topic)
{
    (void)bp;
    struct follow *f = find_follow(topic);
    if (f)
        free_follow(f); /* a blocked XREAD may still name it: its entries are ignored */
}

static void redis_stats(struct rill_backplane *bp, lua_State *L)
{
    (void)bp;
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, R.state == UP);
    lua_setfield(L, -2, "connected");
    lua_pushinteger(L, R.reconnects);
    lua_setfield(L, -2, "reconnects");
    if (R.last_error[0]) {
        lua_pushstring(L, R.last_error);
        lua_setfield(L, -2, "last_error");
    }
    lua_pushnumber(L, R.lag);
    lua_setfield(L, -2, "lag");
    lua_pushinteger(L, R.nfollows);
    lua_setfield(L, -2, "topics");
    lua_pushinteger(L, R.loads);
    lua_setfield(L, -2, "loads");
    lua_pushfstring(L, "%s:%d", R.url.host, R.url.port);
    lua_setfield(L, -2, "address");
    lua_setfield(L, -2, "redis");
}

/* ---- connecting ------------------------------------------------------------------------ */

static void on_connect(const redisAsyncContext *ac, int status);
static void on_disconnect(const redisAsyncContext *ac, int status);

static void maybe_up(void)
{
    if (R.state != CONNECTING || R.handshake > 0 || !R.cmd.connected || !R.rd.connected)
        return;
    R.state = UP;
    R.first_done = 1;
    R.last_error[0] = '\0';
    if (R.connects++ > 0) {
        R.reconnects++;
        reconnects_total++;
    }
    rill_log_at(RILL_LOG_INFO, "hub: redis at %s:%d connected%s", R.url.host, R.url.port,
                R.reconnects ? " again" : "");
    for (struct follow *f = R.follows, *next; f; f = next) {
        next = f->next;
        resume_follow(f);
    }
    start_read();
}

static void on_handshake(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = take_reply(ac, r, priv);
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        rill_log_at(RILL_LOG_ERROR, "hub: redis at %s:%d refused rill: %s", R.url.host, R.url.port,
                    reply->str);
        note_error("refused", reply->str);
        schedule_teardown();
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && ac->data == &R.rd)
        R.reader_id = reply->integer; /* CLIENT ID: for CLIENT UNBLOCK */
    R.handshake--;
    maybe_up();
}

static void handshake_cmd(struct conn *c, int argc, const char **argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct op *op = op_new(OP_HANDSHAKE, NULL, 0);
    if (op && send_argv(c, on_handshake, op, argc, argv, lens) == 0) {
        R.handshake++;
        return;
    }
    if (op)
        op_free(op);
    note_error("cannot send the handshake", NULL);
    schedule_teardown();
}

/* AUTH and SELECT on each connection, and the reader's CLIENT ID: queued before it connects. */
static void handshake(struct conn *c)
{
    char db[16];
    if (R.url.user[0])
        handshake_cmd(c, 3, (const char *[]){"AUTH", R.url.user, R.url.password});
    else if (R.url.password[0])
        handshake_cmd(c, 2, (const char *[]){"AUTH", R.url.password});
    if (R.url.db) {
        snprintf(db, sizeof db, "%d", R.url.db);
        handshake_cmd(c, 2, (const char *[]){"SELECT", db});
    }
    if (c == &R.rd)
        handshake_cmd(c, 2, (const char *[]){"CLIENT", "ID"});
}

static int open_conn(struct conn *c)
{
    redisAsyncContext *ac = redisAsyncConnect(R.url.host, R.url.port);
    if (!ac) {
        note_error("cannot connect", "out of memory");
        return -1;
    }
    if (ac->err) {
        note_error("cannot connect", ac->errstr);
        redisAsyncFree(ac); /* no callback will fire for it */
        return -1;
    }
    *c = (struct conn){ac, 0, 0, now(), 0};
    ac->data = c;
    redisLibeventAttach(ac, R.w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    handshake(c);
    return 0;
}

static void connect_both(void)
{
    R.state = CONNECTING;
    R.connect_started = now();
    R.handshake = 0;
    if (open_conn(&R.cmd) != 0 || open_conn(&R.rd) != 0)
        schedule_teardown();
}

/* Keepalive: a peer that vanished without a word is noticed even with nothing in flight. */
static void keepalive(int fd)
{
    int on = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK) {
        c->ac = NULL; /* hiredis frees it when this returns; no disconnect callback comes */
        note_error("cannot connect", ac->errstr);
        schedule_teardown();
        return;
    }
    c->connected = 1;
    keepalive(ac->c.fd);
    maybe_up();
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    (void)status;
    c->ac = NULL; /* freed when this returns */
    c->connected = 0;
    if (R.stopping || R.state == DOWN)
        return;
    if (ac->err && ac->errstr[0])
        note_error("connection lost", ac->errstr);
    schedule_teardown();
}

/* Frees what is left of c; its pending callbacks run now, with NULL replies. */
static void close_conn(struct conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac)
        redisAsyncFree(ac); /* runs on_disconnect, which clears c->ac */
    *c = (struct conn){0};
}

static void schedule_retry(void)
{
    double d = R.backoff < BACKOFF_MIN ? BACKOFF_MIN : R.backoff;
    R.backoff = d * 2 > BACKOFF_MAX ? BACKOFF_MAX : d * 2;
    d *= 0.5 + (double)rand() / RAND_MAX / 2; /* jitter: instances do not reconnect in step */
    struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6)};
    evtimer_add(R.retry_ev, &tv);
    rill_log_at(RILL_LOG_WARN, "hub: redis at %s:%d unavailable (%s): retrying in %.1f s",
                R.url.host, R.url.port, R.last_error[0] ? R.last_error : "?", d);
}

/*
 * From our own timer, never inside a hiredis callback: both connections
 * go, what was in flight fails (publishers get "unavailable"), and every
 * followed topic is loaded or checked again once reconnected.
 */
static void on_teardown(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    R.teardown_pending = 0;
    if (R.state == DOWN || R.stopping)
        return;
    R.state = DOWN; /* first: the failing callbacks below send nothing */
    close_conn(&R.cmd);
    close_conn(&R.rd);
    R.reading = R.unblock_sent = R.unblock_tries = 0;
    evtimer_del(R.unblock_ev);
    for (struct follow *f = R.follows; f; f = f->next) {
        if (f->state == F_LOADING || (f->state == F_LOAD))
            f->state = F_LOAD;
        else if (f->state != F_BROKEN)
            f->state = F_CHECK;
        if (f->reloading)
            f->reload = 1;
        f->reloading = 0;
    }
    R.first_done = 1;
    schedule_retry();
}

static void schedule_teardown(void)
{
    if (R.teardown_pending || R.stopping || !R.teardown_ev)
        return;
    R.teardown_pending = 1;
    struct timeval zero = {0, 0};
    evtimer_add(R.teardown_ev, &zero);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (R.state == DOWN && !R.stopping)
        connect_both();
}

/* hiredis 0.14 has no timeouts: a connect, a command or a read that takes too long fails here. */
static void on_pong(redisAsyncContext *ac, void *r, void *priv)
{
    take_reply(ac, r, priv);
}

/* A PING on a connection with nothing to do, so that Redis's idle timeout never closes it. */
static void ping_if_idle(struct conn *c, double t)
{
    if (c->pending > 0 || (c == &R.rd && R.reading) || t - c->progress < IDLE_PING)
        return;
    struct op *op = op_new(OP_UNBLOCK, NULL, 0);
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    if (op && send_argv(c, on_pong, op, 1, argv, lens) != 0)
        op_free(op);
}

/* Bytes arriving for a long reply (a big load) are progress too, not only whole replies. */
static void note_bytes(struct conn *c, double t)
{
    if (!c->ac || !c->ac->c.reader)
        return;
    const redisReader *r = c->ac->c.reader;
    size_t seen = r->len + r->pos + (size_t)r->ridx * 131 +
                  (r->ridx >= 0 ? (size_t)r->rstack[r->ridx].idx * 7919 : 0);
    if (seen != c->bytes_seen) {
        c->bytes_seen = seen;
        c->progress = t;
    }
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    double t = now();
    (void)fd, (void)what, (void)arg;
    if (R.state == UP) {
        note_bytes(&R.cmd, t);
        note_bytes(&R.rd, t);
        ping_if_idle(&R.cmd, t);
        ping_if_idle(&R.rd, t);
    }
    if (R.state == CONNECTING && t - R.connect_started > CONNECT_TIMEOUT) {
        note_error("connect timed out", NULL);
        schedule_teardown();
    } else if (R.state == UP && R.cmd.pending > 0 && t - R.cmd.progress > CMD_TIMEOUT) {
        note_error("no reply within 3 s", NULL);
        schedule_teardown();
    } else if (R.state == UP && R.reading &&
               t - (R.rd.progress > R.read_sent ? R.rd.progress : R.read_sent) >
                   BLOCK_MS / 1000.0 + READ_GRACE) {
        note_error("the reader got no reply within its block time + 2 s", NULL);
        schedule_teardown();
    }
}

/* ---- the URL ------------------------------------------------------------------------- */

/* %XX decoding of a user or password into out; -1 if malformed or too long. */
static int decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        if (s[i] == '%' && i + 2 < len + 0 && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2]) && sscanf(s + i + 1, "%2x", &v) == 1) {
            if (o + 1 >= cap || v == 0)
                return -1;
            out[o++] = (char)v;
            i += 2;
        } else if (s[i] == '%') {
            return -1;
        } else {
            if (o + 1 >= cap)
                return -1;
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return 0;
}

static int url_error(char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "--hub: %s, got '%s' (redis://[user:password@]HOST:PORT[/db])", why, url);
    return -1;
}

int rill_redis_url_parse(const char *url, struct rill_redis_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0)
        return url_error(err, errlen, url,
                         "rediss:// (TLS) is not supported: Debian 12's hiredis 0.14 has no TLS; "
                         "reach Redis through a local TLS tunnel (stunnel) with redis://");
    if (strncmp(url, "redis://", 8) != 0)
        return url_error(err, errlen, url, "a redis:// URL expected");
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon ? colon : at;
        if (decode(p, (size_t)(user_end - p), u->user, sizeof u->user) != 0 ||
            (colon &&
             decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password) != 0))
            return url_error(err, errlen, url, "a malformed user or password");
        if (!colon) { /* redis://password@host, as redis-cli -u reads it */
            memcpy(u->password, u->user,
                   sizeof u->password < sizeof u->user ? sizeof u->password : sizeof u->user);
            u->user[0] = '\0';
        }
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof u->host)
        return url_error(err, errlen, url, "a host expected");
    memcpy(u->host, p, hlen);
    u->host[hlen] = '\0';
    p += hlen;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return url_error(err, errlen, url, "a port from 1 to 65535 expected");
        u->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || db < 0 || db > 1000000)
            return url_error(err, errlen, url, "a database number expected after /");
        u->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        return url_error(err, errlen, url, "nothing expected after the port but /db");
    }
    return 0;
}

/* ---- start and stop ----------------------------------------------------------------- */

void rill_hub_redis_figures(struct rill_backplane_figures *f)
{
    f->reconnects = reconnects_total;
    if (!R.started)
        return;
    f->connected = R.state == UP;
    f->lag = R.lag;
}

int rill_hub_redis_start(struct rill_worker *w, const struct rill_redis_url *u, const char *prefix)
{
    memset(&R, 0, sizeof R);
    R.bp = (struct rill_backplane){"redis",          redis_publish,   redis_close,
                                   redis_disconnect, redis_configure, redis_forget,
                                   redis_load,       redis_unfollow,  redis_stats};
    R.w = w;
    R.url = *u;
    if (!(R.prefix = strdup(prefix)))
        return -1;
    R.prefix_len = strlen(prefix);
    struct rill_hub_bounds b;
    rill_hub_bounds(&b);
    R.history = b.history;
    snprintf(R.origin, sizeof R.origin, "%ld-%lx", (long)getpid(), (unsigned long)rand());
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    R.retry_ev = evtimer_new(w->base, on_retry, NULL);
    R.teardown_ev = evtimer_new(w->base, on_teardown, NULL);
    R.watchdog_ev = event_new(w->base, -1, EV_PERSIST, on_watchdog, NULL);
    R.unblock_ev = evtimer_new(w->base, on_unblock_retry, NULL);
    if (!R.retry_ev || !R.teardown_ev || !R.watchdog_ev || !R.unblock_ev) {
        rill_hub_redis_stop();
        return -1;
    }
    struct timeval half = {0, 500000};
    event_add(R.watchdog_ev, &half);
    R.started = 1;
    rill_hub_use(&R.bp);
    connect_both();
    return 0;
}

void rill_hub_redis_settle(double seconds)
{
    double deadline = now() + seconds;
    while (R.started && !R.first_done && now() < deadline)
        event_base_loop(R.w->base, EVLOOP_ONCE);
}

void rill_hub_redis_stop(void)
{
    if (!R.w)
        return;
    R.stopping = 1;
    note_error("the server is stopping", NULL);
    R.state = DOWN;
    close_conn(&R.cmd); /* what waits is answered now, "unavailable" */
    close_conn(&R.rd);
    while (R.ops) /* none should be left: every callback ran */
        op_free(R.ops);
    while (R.follows)
        free_follow(R.follows);
    if (R.retry_ev)
        event_free(R.retry_ev);
    if (R.teardown_ev)
        event_free(R.teardown_ev);
    if (R.watchdog_ev)
        event_free(R.watchdog_ev);
    if (R.unblock_ev)
        event_free(R.unblock_ev);
    free(R.prefix);
    if (R.started)
        rill_hub_use(NULL);
    memset(&R, 0, sizeof R);
}
