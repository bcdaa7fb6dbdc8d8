/* SPDX-License-Identifier: MIT */
/*
 * rill.core.spawn(argv): a child process whose output we read line by line
 * with timeouts. rill.test uses it to run a server on port 0, wait for its
 * "rill listening on" line, and kill it however the spec ends: __gc and
 * __close kill it, and PR_SET_PDEATHSIG kills it if the test process dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "effects.h"
#include "luanum.h"

#define PROCESS_MT "rill.process"

struct process {
    pid_t pid;  /* 0 once reaped */
    int err_fd; /* read end of the child's stderr, -1 when closed */
    int status; /* wait status once reaped */
};

static struct process *check_process(lua_State *L)
{
    return luaL_checkudata(L, 1, PROCESS_MT);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A timeout argument: 10 s when absent; a NaN would make the wait loops spin forever. */
static double opt_seconds(lua_State *L, int arg)
{
    return lua_isnoneornil(L, arg) ? 10 : rill_check_range(L, arg, 0, RILL_MAX_SECONDS);
}

/* In the child: stdout and stderr to the pipe, die with the parent, exec. Never returns. */
static void exec_child(int err_w, char **argv, char **env)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* a worker (or a process still loading) ignores these; the program it runs must not */
    const int reset[] = {SIGINT, SIGPIPE, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        signal(reset[i], SIG_DFL);
    for (int i = 0; env[i]; i += 2)
        setenv(env[i], env[i + 1], 1);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(err_w, 1);
    dup2(err_w, 2);
    execvp(argv[0], argv);
    dprintf(2, "rill.test: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* The {NAME = value} table at idx as a NULL-ended name, value, name, value... array. */
static char **env_pairs(lua_State *L, int idx)
{
    int n = 0;
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            n++;
            lua_pop(L, 1);
        }
    }
    char **env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(2 * n + 1), 0);
    int i = 0;
    if (n > 0) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            env[i++] = (char *)luaL_checkstring(L, -2);
            env[i++] = (char *)luaL_checkstring(L, -1); /* kept alive by the table */
            lua_pop(L, 1);
        }
    }
    env[i] = NULL;
    return env;
}

/* spawn({"prog", "arg", ...} [, {NAME = value}]) → process */
static int process_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    char **env = env_pairs(L, 2);
    int n = (int)luaL_len(L, 1);
    luaL_argcheck(L, n >= 1, 1, "empty argv");
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        argv[i] = (char *)luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the string stays alive in the argv table */
    }
    argv[n] = NULL;

    struct process *p = lua_newuserdatauv(L, sizeof *p, 1);
    p->pid = 0;
    p->err_fd = -1;
    luaL_setmetatable(L, PROCESS_MT);
    lua_pushliteral(L, "");
    lua_setiuservalue(L, -2, 1); /* everything read from stderr so far */

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return luaL_error(L, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return luaL_error(L, "fork: %s", strerror(errno));
    }
    if (pid == 0)
        exec_child(fds[1], argv, env);
    close(fds[1]);
    p->pid = pid;
    p->err_fd = fds[0];
    fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
    return 1;
}

/* Appends what can be read now to the log. Returns 0 at EOF, 1 otherwise. */
static int slurp(lua_State *L, struct process *p)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(p->err_fd, buf, sizeof buf);
        if (n > 0) {
            lua_getiuservalue(L, 1, 1);
            lua_pushlstring(L, buf, (size_t)n);
            lua_concat(L, 2);
            lua_setiuservalue(L, 1, 1);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 1;
        close(p->err_fd);
        p->err_fd = -1;
        return 0;
    }
}

/* Reads whatever the child has written; waits up to `timeout` for more. */
static void pump(lua_State *L, struct process *p, double timeout)
{
    if (p->err_fd < 0)
        return;
    struct pollfd pfd = {.fd = p->err_fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)(timeout * 1000)) > 0)
        slurp(L, p);
}

/* The first complete line of log[from..] containing text: its start and end, or 0. */
static int find_line(const char *log, size_t len, size_t from, const char *text, size_t *b,
                     size_t *e)
{
    while (from < len) {
        const char *nl = memchr(log + from, '\n', len - from);
        if (!nl)
            return 0; /* an incomplete line is not matched yet */
        size_t end = (size_t)(nl - log);
        if (memmem(log + from, end - from, text, strlen(text))) {
            *b = from;
            *e = end;
            return 1;
        }
        from = end + 1;
    }
    return 0;
}

/*
 * proc:wait_for(text, timeout, from) → the first stderr line containing the
 * plain text, starting at byte `from` (default 1), and the position after it;
 * or nil, "timeout" / nil, "exited".
 */
static int process_wait_for(lua_State *L)
{
    struct process *p = check_process(L);
    const char *text = luaL_checkstring(L, 2);
    double deadline = now() + opt_seconds(L, 3);
    size_t from =
        (size_t)(lua_isnoneornil(L, 4) ? 1 : rill_check_int_range(L, 4, 1, LUA_MAXINTEGER)) - 1;
    size_t b, e, len;
    for (;;) {
        lua_getiuservalue(L, 1, 1);
        const char *log = lua_tolstring(L, -1, &len);
        if (find_line(log, len, from, text, &b, &e)) {
            lua_pushlstring(L, log + b, e - b);
            lua_pushinteger(L, (lua_Integer)e + 2);
            return 2;
        }
        lua_pop(L, 1);
        double left = deadline - now();
        if (p->err_fd < 0 || left <= 0) {
            lua_pushnil(L);
            lua_pushstring(L, p->err_fd < 0 ? "exited" : "timeout");
            return 2;
        }
        pump(L, p, left < 0.05 ? left : 0.05);
    }
}

/* proc:log() → everything the child wrote to stderr so far. */
static int process_log(lua_State *L)
{
    struct process *p = check_process(L);
    if (p->err_fd >= 0)
        slurp(L, p);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int signal_number(lua_State *L, int idx)
{
    static const char *const names[] = {"TERM", "KILL", "INT", "USR1", "USR2",
                                        "STOP", "CONT", "HUP", "QUIT", NULL};
    static const int numbers[] = {SIGTERM, SIGKILL, SIGINT, SIGUSR1, SIGUSR2,
                                  SIGSTOP, SIGCONT, SIGHUP, SIGQUIT};
    if (lua_type(L, idx) == LUA_TNUMBER)
        return (int)rill_check_int_range(L, idx, 1, 64);
    return numbers[luaL_checkoption(L, idx, "TERM", names)];
}

/* proc:kill(sig) sends a signal ("TERM", "KILL", "INT", "USR1", ... or a number). */
static int process_kill(lua_State *L)
{
    struct process *p = check_process(L);
    int sig = signal_number(L, 2); /* checked even when the process is gone */
    if (p->pid > 0)
        kill(p->pid, sig);
    return 0;
}

static int reap(struct process *p, int flags)
{
    if (p->pid <= 0)
        return 1;
    pid_t r = waitpid(p->pid, &p->status, flags);
    if (r == p->pid) {
        p->pid = 0;
        return 1;
    }
    return 0;
}

/* proc:wait(timeout) → exit code, or -signal; nil, "timeout". */
static int process_wait(lua_State *L)
{
    struct process *p = check_process(L);
    double deadline = now() + opt_seconds(L, 2);
    while (!reap(p, WNOHANG)) {
        if (now() >= deadline) {
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        if (p->err_fd >= 0)
            pump(L, p, 0.01); /* keeps the pipe drained so the child never blocks on it */
        else
            poll(NULL, 0, 10);
    }
    if (WIFEXITED(p->status))
        lua_pushinteger(L, WEXITSTATUS(p->status));
    else
        lua_pushinteger(L, -WTERMSIG(p->status));
    return 1;
}

static int process_pid(lua_State *L)
{
    struct process *p = check_process(L);
    lua_pushinteger(L, p->pid);
    return 1;
}

/* __gc and __close: kill and reap, close the pipe. Idempotent. */
static int process_close(lua_State *L)
{
    struct process *p = check_process(L);
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        reap(p, 0);
    }
    if (p->err_fd >= 0)
        close(p->err_fd);
    p->err_fd = -1;
    return 0;
}

static const luaL_Reg process_methods[] = {
    {"wait_for", process_wait_for},
    {"log", process_log},
    {"kill", process_kill},
    {"wait", process_wait},
    {"pid", process_pid},
    {"close", process_close},
    {NULL, NULL},
};

static const luaL_Reg process_meta[] = {
    {"__gc", process_close},
    {"__close", process_close},
    {"__index", NULL},
    {NULL, NULL},
};

void rill_open_process(lua_State *L)
{
    luaL_newmetatable(L, PROCESS_MT);
    luaL_setfuncs(L, process_meta, 0);
    luaL_newlib(L, process_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, process_spawn);
    lua_setfield(L, -2, "spawn");
}
