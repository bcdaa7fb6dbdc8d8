/* SPDX-License-Identifier: MIT */
/*
 * The control commands (ctl.h), run in a short-lived process of their own,
 * never in a master or a worker. The protocol with the master:
 *   - <pidfile> holds the master's pid and a newline;
 *   - <pidfile>.status, replaced atomically (write, rename), starts with
 *     "<n> ok" or "<n> failed", n counting the finished reload attempts (0 at
 *     start); after "failed" come the error lines (the new code's Lua error).
 *   - <pidfile>.stats, replaced the same way at SIGUSR2, starts with
 *     "pid <pid> answer <n>"; its other lines are the figures (ctlfile.c).
 * A reload sends SIGHUP and waits for n to grow; a stop sends SIGTERM (or
 * SIGQUIT) and waits for the pid to go; stats sends SIGUSR2 and waits for a
 * first line other than the one before. Every wait polls every 20 ms and is
 * bounded by --timeout. This file never signals a pid below 2: kill(0) and
 * kill(-1) would reach the whole process group or every process we own.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS     20
#define STATUS_MAX  16384 /* enough for a Lua error and its traceback */
#define MAX_TIMEOUT 86400.0

enum ctl_cmd { CTL_RELOAD, CTL_STOP, CTL_STATS };

struct ctl {
    enum ctl_cmd cmd;
    int now;              /* stop --now: SIGQUIT */
    const char *pid_file; /* --pid-file */
    double timeout;       /* --timeout, seconds */
    pid_t pid;            /* read from pid_file */
};

/* One reading of the status file. */
struct status {
    long n;                 /* reload attempts finished */
    int ok;                 /* the last one's outcome */
    char error[STATUS_MAX]; /* the lines after the first, when failed */
};

static int usage(void)
{
    fprintf(stderr, "usage: rill reload|stop|stats [--pid-file PATH] [--timeout SECONDS] [--now]\n"
                    "       (--now: stop only)\n");
    return 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A --timeout value: a finite positive number of seconds, at most a day. */
static int parse_timeout(const char *s, double *out)
{
    char *end;
    errno = 0;
    double t = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(t) || t <= 0 || t > MAX_TIMEOUT)
        return -1;
    *out = t;
    return 0;
}

/* Fills c from argv; -1 on any usage error (the caller prints the usage). */
static int parse_args(struct ctl *c, int argc, char **argv)
{
    static const char *const names[] = {"reload", "stop", "stats"};
    int cmd = -1;
    for (int i = 0; argc >= 1 && i < 3; i++)
        if (strcmp(argv[0], names[i]) == 0)
            cmd = i;
    if (cmd < 0)
        return -1;
    *c = (struct ctl){.cmd = (enum ctl_cmd)cmd, .pid_file = "rill.pid", .timeout = 60};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--now") == 0 && c->cmd == CTL_STOP) {
            c->now = 1;
        } else if (strcmp(a, "--pid-file") == 0 && value && value[0]) {
            c->pid_file = value;
            i++;
        } else if (strcmp(a, "--timeout") == 0 && value && parse_timeout(value, &c->timeout) == 0) {
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Prints "rill: <message>" to stderr; returns 1, the exit status of a failed command. */
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rill: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/*
 * Reads up to size-1 bytes of path, NUL-terminated. Length, or -1 with errno.
 * Only a regular file: a FIFO planted under the name would block the read
 * past --timeout (opened non-blocking, so the open itself cannot).
 */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    size_t len = 0;
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    buf[len] = '\0';
    return (ssize_t)len;
}

/* The pid in c->pid_file: digits, then a newline or nothing. 0, or 1 after a message. */
static int read_pid(struct ctl *c)
{
    char buf[32], *end;
    if (read_small(c->pid_file, buf, sizeof buf) < 0)
        return fail("cannot read pid file %s: %s", c->pid_file, strerror(errno));
    errno = 0;
    long pid = strtol(buf, &end, 10);
    if (errno || end == buf || buf[0] < '0' || buf[0] > '9' || pid < 2 || (pid_t)pid != pid ||
        (*end && strcmp(end, "\n") != 0))
        return fail("pid file %s does not hold a pid", c->pid_file);
    c->pid = (pid_t)pid;
    return 0;
}

/*
 * Whether pid still runs. A zombie has finished: it stays only until its
 * parent reaps it, which a supervisor or a test harness may not do while we
 * wait, so its /proc state ('Z') counts as gone.
 */
static int alive(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return errno != ENOENT;            /* no /proc: trust kill() */
    const char *paren = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* Sends sig to the master. 0, or 1 after a message (no such process, not ours). */
static int signal_master(const struct ctl *c, int sig)
{
    if (!alive(c->pid))
        return fail("no rill running with pid %ld (from %s)", (long)c->pid, c->pid_file);
    if (kill(c->pid, sig) != 0)
        return fail("cannot signal pid %ld: %s", (long)c->pid, strerror(errno));
    return 0;
}

/* Parses "<n> ok|failed\n<error lines>" into st. 0, or -1 if missing or malformed. */
static int read_status(const char *path, struct status *st)
{
    char buf[STATUS_MAX], word[8];
    int used = 0;
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    if (sscanf(buf, "%ld %7s%n", &st->n, word, &used) != 2 || st->n < 0)
        return -1;
    st->ok = strcmp(word, "ok") == 0;
    if (!st->ok && strcmp(word, "failed") != 0)
        return -1;
    const char *rest = buf + used;
    rest += strspn(rest, " \t");
    rest += *rest == '\n';
    size_t len = strlen(rest);
    while (len && (rest[len - 1] == '\n' || rest[len - 1] == '\r'))
        len--; /* the last line's newline: the message ends with ours */
    memcpy(st->error, rest, len);
    st->error[len] = '\0';
    return 0;
}

/* Waits 20 ms; 0, or -1 once the deadline has passed. */
static int tick(double deadline)
{
    if (now_s() >= deadline)
        return -1;
    poll(NULL, 0, POLL_MS);
    return 0;
}

/*
 * rill reload: SIGHUP, then the status file until its count passes the one
 * read before the signal (none: a single process, which cannot reload). The
 * status is checked before liveness, so a master that answers and then exits
 * still has its answer reported. (A reload someone else triggered, finished
 * between our first read and our signal, would be reported as ours.)
 */
static int ctl_reload(const struct ctl *c)
{
    static struct status st; /* 16 KiB: off the stack */
    char path[4096];
    if (snprintf(path, sizeof path, "%s.status", c->pid_file) >= (int)sizeof path)
        return fail("pid file path too long");
    if (read_status(path, &st) != 0) /* a master writes one at start: this is no master */
        return fail("%s is missing: pid %ld runs no master, and only a master reloads "
                    "(--workers N, or --reload)",
                    path, (long)c->pid);
    long n0 = st.n;
    if (signal_master(c, SIGHUP) != 0)
        return 1;
    for (double deadline = now_s() + c->timeout;;) {
        if (read_status(path, &st) == 0 && st.n > n0)
            break;
        if (!alive(c->pid))
            return fail("master (pid %ld) exited during the reload", (long)c->pid);
        if (tick(deadline) != 0)
            return fail("no reload result in %s after %g s", path, c->timeout);
    }
    if (!st.ok)
        return fail("reload failed: %s", st.error[0] ? st.error : "(no reason given)");
    printf("rill: reloaded (pid %ld)\n", (long)c->pid);
    return 0;
}

/* rill stop [--now]: SIGTERM (graceful drain) or SIGQUIT, then wait for the pid to go. */
static int ctl_stop(const struct ctl *c)
{
    if (signal_master(c, c->now ? SIGQUIT : SIGTERM) != 0)
        return 1;
    for (double deadline = now_s() + c->timeout; alive(c->pid);)
        if (tick(deadline) != 0)
            return fail("pid %ld still running after %g s", (long)c->pid, c->timeout);
    printf("rill: stopped (pid %ld)\n", (long)c->pid);
    return 0;
}

/* The stats file whole into buf ("" when there is none); its first line's length. */
static size_t read_stats(const char *path, char *buf, size_t size)
{
    if (read_small(path, buf, size) < 0)
        buf[0] = '\0';
    return strcspn(buf, "\n");
}

/*
 * rill stats: SIGUSR2, then the stats file until its first line names this
 * pid and differs from the one read before the signal; its figures go to
 * stdout. (Two `rill stats` at once may both print the later answer.)
 */
static int ctl_stats(const struct ctl *c)
{
    static char before[STATUS_MAX], text[STATUS_MAX]; /* off the stack */
    char path[4096], want[64];
    if (snprintf(path, sizeof path, "%s.stats", c->pid_file) >= (int)sizeof path)
        return fail("pid file path too long");
    int wlen = snprintf(want, sizeof want, "pid %ld answer ", (long)c->pid);
    size_t blen = read_stats(path, before, sizeof before);
    if (signal_master(c, SIGUSR2) != 0)
        return 1;
    for (double deadline = now_s() + c->timeout;;) {
        size_t len = read_stats(path, text, sizeof text); /* checked and printed: one read */
        if (strncmp(text, want, (size_t)wlen) == 0 && text[len] == '\n' &&
            (len != blen || memcmp(text, before, len) != 0))
            break;
        if (!alive(c->pid))
            return fail("pid %ld exited before it answered", (long)c->pid);
        if (tick(deadline) != 0)
            return fail("no answer from pid %ld in %s after %g s", (long)c->pid, path, c->timeout);
    }
    fputs(strchr(text, '\n') + 1, stdout);
    return 0;
}

int rill_ctl_main(int argc, char **argv)
{
    struct ctl c;
    if (parse_args(&c, argc, argv) != 0)
        return usage();
    if (read_pid(&c) != 0)
        return 1;
    switch (c.cmd) {
    case CTL_RELOAD: return ctl_reload(&c);
    case CTL_STOP: return ctl_stop(&c);
    case CTL_STATS: return ctl_stats(&c);
    }
    return usage();
}
