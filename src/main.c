/* SPDX-License-Identifier: MIT */
/* rill [options] app.lua: the command line, the Lua state, the app, the server. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "accesslog.h"
#include "ctl.h"
#include "ctlfile.h"
#include "effects.h"
#include "embed.h"
#include "hub_redis.h"
#include "hub_relay.h"
#include "log.h"
#include "metrics.h"
#include "master.h"
#include "proxy.h"
#include "response.h"
#include "server.h"
#include "tls.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fputs("usage: rill [options] app.lua [-- app arguments]\n"
          "\n"
          "Runs the handler that app.lua returns (a function, or a router).\n"
          "The words after -- are the app's: rill.args.\n"
          "\n"
          "options:\n"
          "  -l, --listen [http://|https://]HOST:PORT\n"
          "                            address to listen on (default 127.0.0.1:8080;\n"
          "                            port 0 picks a free port, printed when ready);\n"
          "                            repeat it for more (at most 8); https:// needs\n"
          "      --tls-cert PEM        the certificate chain (the server's first) and\n"
          "      --tls-key PEM         its key; SIGHUP reads both again\n"
          "      --grace SECONDS       at SIGINT/SIGTERM, time in-flight requests get\n"
          "                            to finish (default 10); streams end at once\n"
          "      --compress            gzip text responses and event streams for\n"
          "                            clients that take it, unless a response says\n"
          "                            compress = false (default: only those that\n"
          "                            say compress = true)\n"
          "      --max-body-bytes N    largest request body (default 1048576)\n"
          "      --max-header-bytes N  largest request line + headers (default 32768)\n"
          "      --keepalive-timeout S an idle keep-alive connection, or a client that\n"
          "                            stalls mid-request, is closed after S seconds\n"
          "                            (default 60; 0: never); streams are never cut\n"
          "      --request-timeout S   a client must send a whole request within S\n"
          "                            seconds of its first byte, or it gets a 408\n"
          "                            and is closed (default 30; 0: no limit)\n"
          "      --header-timeout S    a client must send a request's head within S\n"
          "                            seconds of its first byte, or it gets a 408\n"
          "                            and is closed (default 20; 0: no limit)\n"
          "      --min-rate B          a head still arriving must come at B bytes/s:\n"
          "                            it has 1 s, plus 1 s per B bytes received,\n"
          "                            else a 408 (default 500; 0: off)\n"
          "      --max-connections N   past N open connections a new one gets a 503\n"
          "                            and is closed (default: the open-file limit\n"
          "                            less 64; 0: no limit)\n"
          "      --backlog N           connections the kernel may queue before rill\n"
          "                            accepts them, 1 to 65535 (default: the\n"
          "                            kernel's somaxconn, else 4096)\n"
          "      --tail-root DIR       a directory rill.tail may read below (repeatable;\n"
          "                            default: the app's directory)\n"
          "      --max-instructions N  a handler running N Lua instructions without\n"
          "                            yielding fails (default 100000000; 0: off)\n"
          "      --max-lua-memory N    bytes the Lua state may hold; past it an\n"
          "                            allocation fails (default 1073741824; 0: off)\n"
          "      --workers N|auto      N worker processes (auto: one per CPU) under a\n"
          "                            master that holds the socket, restarts crashed\n"
          "                            workers and reloads at SIGHUP (default 1: one\n"
          "                            process, no master)\n"
          "      --pid-file PATH       the pid of the master, or of the single process\n"
          "                            (default with a master: rill.pid)\n"
          "      --drain-timeout S     after a reload, old workers keep their streams up\n"
          "                            to S seconds (default 300)\n"
          "      --reload              development: a master with one worker (or\n"
          "                            --workers) reloads when a loaded Lua file changes\n"
          "      --worker-queue-bytes N  hub events queued to a worker that does not\n"
          "                            read them, before it is restarted (default 64 MiB)\n"
          "      --trust-proxy CIDR    a proxy range (10.0.0.0/8, 127.0.0.1, ::1;\n"
          "                            repeatable; 0.0.0.0/0 trusts every client) whose\n"
          "                            header gives req.remote_addr (default: none)\n"
          "      --trust-proxy-header x-forwarded-for|forwarded  the one header read\n"
          "                            from a trusted proxy, which must write it\n"
          "                            (default x-forwarded-for; the other is ignored)\n"
          "      --access-log PATH|-|off  one line per request as it ends, to PATH\n"
          "                            (- : stdout; default off); reopened at SIGUSR1\n"
          "      --access-log-format combined|json  the line's format (default\n"
          "                            combined, plus duration_ms, request id, end,\n"
          "                            upstream_ms)\n"
          "      --log-level error|warn|info|debug  the error log's lines at this\n"
          "                            level or more severe (default info)\n"
          "      --error-log PATH|-    the error log, appended to PATH (- : stderr,\n"
          "                            the default); reopened at SIGUSR1\n"
          "      --hub redis://[user:password@]HOST:PORT[/db]  the hub on Redis\n"
          "                            Streams, shared by every instance that names it\n"
          "                            (default: in memory, this instance's own)\n"
          "      --hub-prefix P        the Redis keys' prefix (default rill:)\n"
          "  -h, --help                this help\n"
          "  -v, --version             the version\n"
          "\n"
          "When ready, rill prints \"rill listening on http://HOST:PORT\" to stderr\n"
          "(https:// for a TLS listener), a line per --listen, in order.\n"
          "SIGUSR1 reopens both logs; SIGUSR2 prints a stats line to the error log.\n"
          "\n"
          "       rill reload [--pid-file PATH] [--timeout S]   new code, streams kept\n"
          "       rill stop [--pid-file PATH] [--timeout S] [--now]\n"
          "       rill stats [--pid-file PATH] [--timeout S]    the server's figures\n",
          out);
}

static int parse_size(const char *arg, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(arg, &end, 10);
    if (*end || end == arg || arg[0] == '-')
        return -1;
    *out = (size_t)v;
    return 0;
}

static int load_embedded(lua_State *L)
{
    const struct rill_embedded *e = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbuffer(L, e->source, e->len, e->chunkname) != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* The Lua side of rill is compiled in (cmake/embed.cmake): no LUA_PATH needed. */
static void preload(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const struct rill_embedded *e = rill_embedded; e->module; e++) {
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, e->module);
    }
    lua_pop(L, 1);
    luaL_requiref(L, "rill.core", rill_open_core, 0);
    lua_pop(L, 1);
}

/* Modules next to the app are found first. */
static void add_app_dir(lua_State *L, const char *app)
{
    const char *slash = strrchr(app, '/');
    lua_getglobal(L, "package");
    if (slash)
        lua_pushlstring(L, app, (size_t)(slash - app));
    else
        lua_pushliteral(L, ".");
    const char *dir = lua_tostring(L, -1);
    lua_getfield(L, -2, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -4, "path");
    lua_pop(L, 3);
}

/*
 * Relative rill.tail paths start in the app's directory, and without
 * --tail-root it is the root too; an app in `/` gets no implicit root
 * (the whole filesystem takes an explicit --tail-root /).
 */
static void tail_app_dir(const char *app, int explicit_roots)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(app, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - app) : 1, slash ? app : ".");
    rill_tail_app_dir(dir[0] ? dir : "/", !explicit_roots);
}

/* Thousands of streams need thousands of descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The default --max-connections: what the fd limit allows, less a margin for files and upstreams.
 */
static int default_max_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX)
        return 0;
    return rl.rlim_cur > 128 ? (int)rl.rlim_cur - 64 : (int)rl.rlim_cur / 2;
}

/*
 * The default --backlog: the kernel's own cap (net.core.somaxconn), as a
 * larger one is cut to it anyway and a smaller one drops connections a burst
 * could have queued (1024 dropped thousands at `ab -c 5000`).
 */
static int default_backlog(void)
{
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    long n = 0;
    if (f) {
        if (fscanf(f, "%ld", &n) != 1)
            n = 0;
        fclose(f);
    }
    if (n < 1)
        return 4096;
    return n > RILL_MAX_BACKLOG ? RILL_MAX_BACKLOG : (int)n;
}

static int is_handler(lua_State *L, int idx)
{
    if (lua_isfunction(L, idx))
        return 1;
    if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/* Leaves the app's handler on the stack, or puts one line in err and returns -1. */
static int load_app(lua_State *L, const char *app, char *err, size_t errlen)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rill"); /* installs the effect-aware coroutine.wrap/resume */
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot load the rill library: %s", lua_tostring(L, -1));
        return -1;
    }
    if (luaL_loadfile(L, app) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "cannot load %s: %s", app, msg ? msg : "(error object)");
        return -1;
    }
    if (!is_handler(L, -1)) {
        snprintf(err, errlen, "%s must return a handler (a function or a router), got %s", app,
                 luaL_typename(L, -1));
        return -1;
    }
    return 0;
}

/* Runaway handlers: generous defaults, 0 turns a limit off. */
static struct {
    size_t instructions; /* per resume of a handler */
    size_t memory;       /* bytes of the Lua state */
} limits = {100 * 1000 * 1000, 1024 * 1024 * 1024};

/* The processes: --workers, --pid-file, --drain-timeout, --reload. */
static struct {
    int workers; /* 0: auto */
    const char *pid_file;
    double drain_timeout;
    int watch;
    size_t max_queue;
} procs = {1, NULL, 300, 0, 64 * 1024 * 1024};

/* --access-log, --access-log-format: each worker opens the log itself. */
static struct {
    const char *path; /* NULL: off */
    int json;
} access_log;

/* Opens this process's access log; 0, or -1 with a message in err. */
static int open_access_log(struct rill_worker *w, char *err, size_t errlen)
{
    return rill_accesslog_open(w->base, access_log.path, access_log.json, err, errlen);
}

/* The words after "--": the app's own arguments, rill.args. */
static struct {
    char **argv;
    int n;
} app_args;

/* --error-log: NULL or "-" for stderr. */
static const char *error_log;

/* --hub redis://... and --hub-prefix. */
static struct {
    int redis;
    struct rill_redis_url url;
    const char *prefix;
} hub = {0, {{0}, 0, {0}, {0}, 0}, "rill:"};

/* One option; returns -1 to go on, or the exit status. */
static int take_option(int c, struct rill_server_config *cfg, int *tail_roots)
{
    char *end;
    switch (c) {
    case 'l':
        if (cfg->nlisten == RILL_MAX_LISTENS) {
            fprintf(stderr, "rill: --listen: at most %d addresses\n", RILL_MAX_LISTENS);
            return EXIT_USAGE;
        }
        if (rill_listen_parse(optarg, &cfg->listen[cfg->nlisten]) == 0) {
            cfg->nlisten++;
            return -1;
        }
        fprintf(stderr,
                "rill: --listen wants HOST:PORT, http://HOST:PORT or https://HOST:PORT, "
                "got '%s'\n",
                optarg);
        return EXIT_USAGE;
    case 'c': cfg->tls_cert = optarg; return -1;
    case 'k': cfg->tls_key = optarg; return -1;
    case 'g':
    case 'K':
    case 'R':
    case 'D': {
        double *v = c == 'g'   ? &cfg->grace
                    : c == 'K' ? &cfg->keepalive_timeout
                    : c == 'R' ? &cfg->request_timeout
                               : &cfg->header_timeout;
        *v = strtod(optarg, &end);
        if (*optarg && !*end && *v >= 0 && *v <= 1e9) /* isfinite too: NaN fails >= */
            return -1;
        fprintf(stderr, "rill: --%s wants seconds, got '%s'\n",
                c == 'g'   ? "grace"
                : c == 'K' ? "keepalive-timeout"
                : c == 'R' ? "request-timeout"
                           : "header-timeout",
                optarg);
        return EXIT_USAGE;
    }
    case 'r':
        cfg->min_rate = strtod(optarg, &end);
        if (*optarg && !*end && cfg->min_rate >= 0 && cfg->min_rate <= 1e12)
            return -1;
        fprintf(stderr, "rill: --min-rate wants bytes per second, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'b': {
        long n = strtol(optarg, &end, 10);
        cfg->backlog = (int)n;
        if (*optarg && !*end && n >= 1 && n <= RILL_MAX_BACKLOG)
            return -1;
        fprintf(stderr, "rill: --backlog wants a count from 1 to %d, got '%s'\n", RILL_MAX_BACKLOG,
                optarg);
        return EXIT_USAGE;
    }
    case 'C': {
        long n = strtol(optarg, &end, 10);
        cfg->max_connections = (int)n;
        if (*optarg && !*end && n >= 0 && n <= INT_MAX)
            return -1;
        fprintf(stderr, "rill: --max-connections wants a count, got '%s'\n", optarg);
        return EXIT_USAGE;
    }
    case 'B':
    case 'H':
        if (parse_size(optarg, c == 'B' ? &cfg->max_body_bytes : &cfg->max_header_bytes) == 0)
            return -1;
        fprintf(stderr, "rill: --%s wants a number of bytes, got '%s'\n",
                c == 'B' ? "max-body-bytes" : "max-header-bytes", optarg);
        return EXIT_USAGE;
    case 'I':
    case 'M':
        if (parse_size(optarg, c == 'I' ? &limits.instructions : &limits.memory) == 0)
            return -1;
        fprintf(stderr, "rill: --%s wants a number, got '%s'\n",
                c == 'I' ? "max-instructions" : "max-lua-memory", optarg);
        return EXIT_USAGE;
    case 'T':
        if (rill_tail_add_root(optarg) == 0) {
            (*tail_roots)++;
            return -1;
        }
        fprintf(stderr, "rill: --tail-root %s: no such directory (or too many roots)\n", optarg);
        return EXIT_USAGE;
    case 'w':
        if (strcmp(optarg, "auto") == 0) {
            procs.workers = 0;
            return -1;
        }
        procs.workers = (int)strtol(optarg, &end, 10);
        if (*optarg && !*end && procs.workers >= 1 && procs.workers <= 1024)
            return -1;
        fprintf(stderr, "rill: --workers wants a count from 1 to 1024 or auto, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'P': procs.pid_file = optarg; return -1;
    case 'd':
        procs.drain_timeout = strtod(optarg, &end);
        if (*optarg && !*end && procs.drain_timeout >= 0 && procs.drain_timeout <= 1e9)
            return -1;
        fprintf(stderr, "rill: --drain-timeout wants seconds, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'W': procs.watch = 1; return -1;
    case 'z': rill_response_compress_default(1); return -1;
    case 'Q':
        if (parse_size(optarg, &procs.max_queue) == 0 && procs.max_queue >= 4096 &&
            procs.max_queue <= (1ULL << 40))
            return -1;
        fprintf(stderr,
                "rill: --worker-queue-bytes wants a number of bytes from 4096 to 2^40, got '%s'\n",
                optarg);
        return EXIT_USAGE;
    case 'X':
        if (rill_proxy_trust(optarg) == 0)
            return -1;
        fprintf(stderr,
                "rill: --trust-proxy wants an IPv4 or IPv6 address or CIDR (10.0.0.0/8, ::1), "
                "got '%s' (or more than 64 ranges)\n",
                optarg);
        return EXIT_USAGE;
    case 'x':
        if (rill_proxy_header(optarg) == 0)
            return -1;
        fprintf(stderr, "rill: --trust-proxy-header wants x-forwarded-for or forwarded, got '%s'\n",
                optarg);
        return EXIT_USAGE;
    case 'A': access_log.path = strcmp(optarg, "off") == 0 ? NULL : optarg; return -1;
    case 'F':
        if (strcmp(optarg, "combined") == 0 || strcmp(optarg, "json") == 0) {
            access_log.json = optarg[0] == 'j';
            return -1;
        }
        fprintf(stderr, "rill: --access-log-format wants combined or json, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'L':
        if (rill_log_set_level(optarg) == 0)
            return -1;
        fprintf(stderr, "rill: --log-level wants error, warn, info or debug, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'E': error_log = optarg; return -1;
    case 'U': {
        char err[512];
        if (rill_redis_url_parse(optarg, &hub.url, err, sizeof err) == 0) {
            hub.redis = 1;
            return -1;
        }
        fprintf(stderr, "rill: %s\n", err);
        return EXIT_USAGE;
    }
    case 'p':
        if (*optarg && strlen(optarg) <= 256) {
            hub.prefix = optarg;
            return -1;
        }
        fprintf(stderr, "rill: --hub-prefix wants 1 to 256 bytes, got '%s'\n", optarg);
        return EXIT_USAGE;
    case 'h': usage(stdout); return 0;
    case 'v':
        printf("rill %s (%s, libevent %s)\n", RILL_VERSION, LUA_RELEASE, event_get_version());
        return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
}

/* Whether --name is an option that takes a value (a unique prefix counts, as getopt's). */
static int option_takes_value(const struct option *opts, const char *name)
{
    const struct option *hit = NULL;
    int hits = 0;
    size_t n = strlen(name);
    for (const struct option *o = opts; o->name; o++) {
        if (strcmp(o->name, name) == 0)
            return o->has_arg == required_argument;
        if (strncmp(o->name, name, n) == 0)
            hit = o, hits++;
    }
    return hits == 1 && hit->has_arg == required_argument; /* ambiguous: getopt refuses it */
}

/*
 * The listeners given (else 127.0.0.1:8080) and their certificate: https
 * needs both files, and both files need an https listener (a certificate
 * given for nothing would let one believe TLS is on). -1 to go on.
 */
static int check_listens(struct rill_server_config *cfg)
{
    int tls = 0;
    if (cfg->nlisten == 0)
        rill_listen_parse("127.0.0.1:8080", &cfg->listen[cfg->nlisten++]);
    for (int i = 0; i < cfg->nlisten; i++)
        tls |= cfg->listen[i].tls;
    if (tls && (!cfg->tls_cert || !cfg->tls_key)) {
        fprintf(stderr, "rill: an https:// listener needs --tls-cert and --tls-key\n");
        return EXIT_USAGE;
    }
    if (!tls && (cfg->tls_cert || cfg->tls_key)) {
        fprintf(stderr, "rill: --tls-cert and --tls-key are for an https:// --listen, and none "
                        "was given\n");
        return EXIT_USAGE;
    }
    char err[512];
    struct rill_tls *t = tls ? rill_tls_new(cfg->tls_cert, cfg->tls_key, err, sizeof err) : NULL;
    if (tls && !t) { /* here, once: not in each worker, after "listening" */
        fprintf(stderr, "rill: %s\n", err);
        return EXIT_USAGE;
    }
    rill_tls_free(t);
    return -1;
}

/* Parses the command line into cfg and *app; returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct rill_server_config *cfg, const char **app)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},
        {"tls-cert", required_argument, 0, 'c'},
        {"tls-key", required_argument, 0, 'k'},
        {"grace", required_argument, 0, 'g'},
        {"max-body-bytes", required_argument, 0, 'B'},
        {"max-header-bytes", required_argument, 0, 'H'},
        {"tail-root", required_argument, 0, 'T'},
        {"max-instructions", required_argument, 0, 'I'},
        {"keepalive-timeout", required_argument, 0, 'K'},
        {"max-lua-memory", required_argument, 0, 'M'},
        {"request-timeout", required_argument, 0, 'R'},
        {"max-connections", required_argument, 0, 'C'},
        {"header-timeout", required_argument, 0, 'D'},
        {"min-rate", required_argument, 0, 'r'},
        {"backlog", required_argument, 0, 'b'},
        {"workers", required_argument, 0, 'w'},
        {"pid-file", required_argument, 0, 'P'},
        {"drain-timeout", required_argument, 0, 'd'},
        {"reload", no_argument, 0, 'W'},
        {"compress", no_argument, 0, 'z'},
        {"worker-queue-bytes", required_argument, 0, 'Q'},
        {"trust-proxy", required_argument, 0, 'X'},
        {"trust-proxy-header", required_argument, 0, 'x'},
        {"access-log", required_argument, 0, 'A'},
        {"access-log-format", required_argument, 0, 'F'},
        {"log-level", required_argument, 0, 'L'},
        {"error-log", required_argument, 0, 'E'},
        {"hub", required_argument, 0, 'U'},
        {"hub-prefix", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'v'},
        {0, 0, 0, 0},
    };
    int c, tail_roots = 0, status;
    /* rill's options end at "--" (not an option's value: --pid-file --); the rest are the app's */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            app_args.argv = argv + i + 1;
            app_args.n = argc - i - 1;
            argc = i;
            break;
        }
        if (strcmp(a, "-l") == 0 ||
            (a[0] == '-' && a[1] == '-' && !strchr(a, '=') && option_takes_value(opts, a + 2)))
            i++; /* its value, whatever it looks like */
    }
    while ((c = getopt_long(argc, argv, "l:hv", opts, NULL)) != -1)
        if ((status = take_option(c, cfg, &tail_roots)) >= 0)
            return status;
    if (optind != argc - 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if ((status = check_listens(cfg)) >= 0)
        return status;
    *app = argv[optind];
    tail_app_dir(*app, tail_roots > 0);
    return -1;
}

/* rill.core.args: the app's arguments, a list (rill.args). */
static void set_app_args(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rill.core");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return;
    }
    lua_createtable(L, app_args.n, 0);
    for (int i = 0; i < app_args.n; i++) {
        lua_pushstring(L, app_args.argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "args");
    lua_pop(L, 1);
}

/* A Lua state with rill's modules, the budget and the app's directory on the path. */
static lua_State *new_state(const char *app)
{
    rill_worker_set_memory_cap(limits.memory);
    lua_State *L = rill_worker_newstate();
    luaL_openlibs(L);
    preload(L);
    rill_worker_get(L);
    rill_worker_set_budget(L, (long long)limits.instructions);
    add_app_dir(L, app);
    set_app_args(L);
    return L;
}

/* rill.files records the Lua files the app loads, for the master's --reload watch. */
static void record_files(lua_State *L, const char *app)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rill.files");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "record");
    lua_pushstring(L, app);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        lua_pop(L, 1);
    lua_pop(L, 1);
}

static void send_files(lua_State *L)
{
    const char *paths[256];
    int n = 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rill.files");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "list");
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        int len = (int)luaL_len(L, -1);
        for (int i = 1; i <= len && n < 256; i++) {
            lua_rawgeti(L, -1, i); /* anchored by the list, below */
            if (lua_isstring(L, -1))
                paths[n++] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        rill_hub_relay_send_files(paths, n);
    }
    lua_pop(L, 2);
}

struct app {
    const char *path;
    struct rill_server_config *cfg;
};

/*
 * A worker is ready once its hub snapshot is applied and its server is set
 * up, in either order: an app that runs rill.run at load time spins the
 * loop, and the snapshot may be applied before the server exists.
 */
static struct {
    int snapshot, server, sent, gone;
    int drain;           /* a DRAIN came while the app loaded (rill.run at load time) */
    double drain_within; /* its deadline */
} readiness;

static void maybe_ready(struct rill_worker *w)
{
    if (!readiness.snapshot || !readiness.server || readiness.sent)
        return;
    readiness.sent = 1;
    if (procs.watch) /* first: once "listening" is printed, every loaded file is watched */
        send_files(w->L);
    rill_hub_relay_send_ready();
}

/* What the master tells a worker (hub_relay.c). */
static void on_ready(void *arg)
{
    readiness.snapshot = 1;
    maybe_ready(arg);
}

static void on_accept(void *arg)
{
    struct rill_worker *w = arg;
    char err[256];
    if (w->server && rill_server_accept(w->server, err, sizeof err) != 0) {
        rill_log_at(RILL_LOG_ERROR, "%s", err);
        rill_server_shutdown(w->server);
    }
}

static void on_drain(void *arg, double seconds)
{
    struct rill_worker *w = arg;
    if (w->server) {
        rill_server_drain(w->server, seconds);
    } else {
        readiness.drain = 1;
        readiness.drain_within = seconds;
    }
    rill_hub_relay_send_draining(); /* no connection comes here any more */
}

static void on_gone(void *arg)
{
    struct rill_worker *w = arg;
    readiness.gone = 1;
    if (w->server)
        rill_server_shutdown(w->server);
}

/*
 * With --hub redis, the first connection attempt is over before the server
 * is ready (at most 2 s), so that a request right after "listening" finds
 * Redis connected if it can be. Returns 1, for use in a condition.
 */
static int settle_hub(void)
{
    if (hub.redis)
        rill_hub_redis_settle(2.0);
    return 1;
}

/* A worker, in the master's child: the app loaded here, after the fork. */
static int worker_main(void *arg, int channel_fd, int slot)
{
    struct app *a = arg;
    char err[2048];
    (void)slot;
    lua_State *L = new_state(a->path);
    struct rill_worker *w = rill_worker_get(L);
    struct rill_relay_control ctl = {on_ready, on_accept, on_drain, on_gone, w};
    if (rill_hub_relay_start(w, channel_fd, &ctl) != 0) {
        rill_log_at(RILL_LOG_ERROR, "cannot use the master's channel");
        return 1;
    }
    if (hub.redis && rill_hub_redis_start(w, &hub.url, hub.prefix) != 0) {
        rill_hub_relay_send_failed("cannot set up the hub's Redis connections (out of memory)");
        return 1;
    }
    record_files(L, a->path);
    int status = 0;
    struct rill_server *s = NULL;
    if (open_access_log(w, err, sizeof err) != 0 || load_app(L, a->path, err, sizeof err) != 0 ||
        !settle_hub() || !(s = rill_server_start(w, a->cfg, err, sizeof err))) {
        if (procs.watch) /* the file to fix is watched: saving it reloads */
            send_files(L);
        rill_hub_relay_send_failed(err);
        status = EXIT_USAGE;
    } else {
        rill_accesslog_check_moved(); /* a rotation while the app loaded missed this worker */
        rill_log_check_moved();
        readiness.server = 1;
        maybe_ready(w);
        if (readiness.gone) /* the master died while the app loaded */
            rill_server_shutdown(s);
        else if (readiness.drain) /* it was replaced while it loaded */
            rill_server_drain(s, readiness.drain_within);
        rill_server_run(s);
    }
    rill_server_free(s);
    rill_hub_redis_stop();
    rill_accesslog_close();
    rill_metrics_final(w); /* after the log's last line: its drops at exit count */
    rill_hub_relay_stop();
    lua_close(L);
    rill_worker_free();
    return status;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* The master's ready line: the first generation serves. */
static void announce(void *arg)
{
    const struct app *a = arg;
    for (int i = 0; i < a->cfg->nlisten; i++)
        rill_listen_announce(&a->cfg->listen[i]);
}

/* --workers N ≥ 2, auto or --reload: a master, which binds once and forks the workers. */
static int run_master(struct rill_server_config *cfg, const char *app)
{
    char err[512];
    if (access_log.path && strcmp(access_log.path, "-") != 0) { /* fail here, not in each worker */
        int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK;
        int lfd = open(access_log.path, flags, 0644);
        if (lfd < 0) {
            fprintf(stderr, "rill: cannot open the access log %s: %s\n", access_log.path,
                    strerror(errno));
            return 1;
        }
        close(lfd);
    }
    for (int i = 0; i < cfg->nlisten; i++)
        if (rill_listen_bind(&cfg->listen[i], cfg->backlog, err, sizeof err) != 0) {
            fprintf(stderr, "rill: %s\n", err);
            return 1;
        }
    struct app a = {app, cfg};
    struct rill_master_config mc = {.workers = procs.workers ? procs.workers : online_cpus(),
                                    .announce = announce,
                                    .drain_timeout = procs.drain_timeout,
                                    .pid_file = procs.pid_file ? procs.pid_file : "rill.pid",
                                    .watch = procs.watch,
                                    .max_queue = procs.max_queue,
                                    .worker_main = worker_main,
                                    .arg = &a};
    int status = rill_master_run(&mc);
    for (int i = 0; i < cfg->nlisten; i++)
        close(cfg->listen[i].fd);
    return status;
}

/* A single process's --pid-file (for rill stop): its pid, removed at exit if still ours. */
static int write_pid(const char *path)
{
    rill_ctlfile_remove_stats(path); /* a crashed run's answer, which `rill stats` would misread */
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%ld\n", (long)getpid()) > 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void remove_pid(const char *path)
{
    char text[32] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(text, sizeof text, f))
        text[0] = '\0';
    fclose(f);
    if (atol(text) == (long)getpid()) {
        unlink(path);
        rill_ctlfile_remove_stats(path);
    }
}

/* One process, no master: today's rill. */
static int run_single(struct rill_server_config *cfg, const char *app)
{
    char err[2048];
    /* until the server's handlers exist, a SIGUSR1 or a `rill stats` must not kill us */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    lua_State *L = new_state(app);
    struct rill_worker *w = rill_worker_get(L);
    if (open_access_log(w, err, sizeof err) != 0) {
        fprintf(stderr, "rill: %s\n", err);
        return 1;
    }
    if (hub.redis && rill_hub_redis_start(w, &hub.url, hub.prefix) != 0) {
        fprintf(stderr, "rill: cannot set up the hub's Redis connections (out of memory)\n");
        return 1;
    }
    if (load_app(L, app, err, sizeof err) != 0) {
        fprintf(stderr, "rill: %s\n", err);
        return EXIT_USAGE;
    }
    rill_accesslog_check_moved(); /* moved while the app loaded */
    rill_log_check_moved();
    settle_hub();
    /* before "listening" is printed: whoever waits for that line finds the file */
    if (procs.pid_file && write_pid(procs.pid_file) != 0) {
        fprintf(stderr, "rill: cannot write the pid file %s: %s\n", procs.pid_file,
                strerror(errno));
        return 1;
    }
    cfg->pid_file = procs.pid_file;
    struct rill_server *s = rill_server_start(w, cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "rill: %s\n", err);
        if (procs.pid_file)
            remove_pid(procs.pid_file);
        return 1;
    }
    rill_server_run(s);
    rill_server_free(s);
    rill_hub_redis_stop();
    if (procs.pid_file)
        remove_pid(procs.pid_file);
    rill_accesslog_close();
    rill_metrics_final(w);
    lua_close(L);
    rill_worker_free();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "reload") == 0 || strcmp(argv[1], "stop") == 0 ||
                     strcmp(argv[1], "stats") == 0))
        return rill_ctl_main(argc - 1, argv + 1);
    struct rill_server_config cfg = {.grace = 10.0,
                                     .max_header_bytes = 32 * 1024,
                                     .max_body_bytes = 1024 * 1024,
                                     .keepalive_timeout = 60.0,
                                     .request_timeout = 30.0,
                                     .header_timeout = 20.0,
                                     .min_rate = 500.0,
                                     .max_connections = -1,
                                     .backlog = 0};
    const char *app;
    int status = parse_args(argc, argv, &cfg, &app);
    if (status >= 0)
        return status;
    if (rill_log_open(error_log) != 0) { /* here: each worker inherits it */
        fprintf(stderr, "rill: cannot open the error log %s: %s\n", error_log, strerror(errno));
        return 1;
    }
    raise_fd_limit();
    if (cfg.max_connections < 0)
        cfg.max_connections = default_max_connections();
    if (cfg.backlog == 0)
        cfg.backlog = default_backlog();
    if (procs.workers != 1 || procs.watch)
        return run_master(&cfg, app);
    return run_single(&cfg, app);
}
