/* SPDX-License-Identifier: MIT */
/*
 * The access log's buffer, driven without a server: records made and done
 * by hand, the loop run a turn at a time, a reader (a pipe, a socket) that
 * the test reads or closes at will. Checked: every line made is either read
 * whole or counted as dropped, exactly (a torn line's end is no line); a
 * reader draining a full buffer slowly costs copies no larger than what it
 * read. Bounded by counts; no sleeps.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"

static struct event_base *base;
static char ua[400];      /* a long user agent */
static char target[2000]; /* and target: lines of about 2.5 KB */

/* One request's line, then a loop turn (the flush runs there). */
static void one_line(int i)
{
    char head[24];
    snprintf(head, sizeof head, "/line/%07d", i); /* 13 bytes, before the x's */
    memcpy(target, head, 13);
    struct rill_outcome o;
    rill_outcome_start(&o, 1);
    struct rill_access *a = rill_access_new("GET", target, 1, 1, "127.0.0.1", NULL, ua, NULL);
    o.status = 200;
    rill_access_done(a, &o, "0123456789abcdef0123456789abcdef");
    event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Reads what fd has now (non-blocking) into *total; counts whole lines and the bytes. */
static size_t drain(int fd, size_t at_most, unsigned long *lines, char *last)
{
    char buf[4096];
    size_t got = 0;
    while (got < at_most) {
        size_t want = at_most - got < sizeof buf ? at_most - got : sizeof buf;
        ssize_t n = read(fd, buf, want);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            *lines += buf[i] == '\n';
        *last = buf[n - 1];
        got += (size_t)n;
    }
    return got;
}

/*
 * A pipe read 2 KiB at a time every few lines: the buffer fills past 1 MiB,
 * lines are dropped, and it drains slowly. The compaction's copies stay
 * within what was read; made = read whole + dropped (+ lost at close).
 */
static void slow_reader_costs_no_big_copies(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char path[64], err[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    CHECK(rill_accesslog_open(base, path, 0, err, sizeof err) == 0);
    unsigned long lines = 0, made = 0;
    size_t read_bytes = 0;
    char last = '\n';
    size_t moved0 = rill_accesslog_moved();
    unsigned long dropped0 = rill_accesslog_dropped();
    for (int i = 0; i < 3000; i++, made++) { /* 8 MiB of lines: far past the buffer */
        one_line(i);
        if (i > 600 && i % 3 == 0)
            read_bytes += drain(p[0], 2048, &lines, &last);
    }
    size_t moved = rill_accesslog_moved() - moved0;
    CHECK(rill_accesslog_dropped() > dropped0); /* the buffer did fill */
    CHECK(moved <= read_bytes);
    if (moved > read_bytes)
        fprintf(stderr, "moved %zu bytes for %zu read\n", moved, read_bytes);
    rill_accesslog_close(); /* what the pipe cannot take within a second is lost, counted */
    drain(p[0], (size_t)-1, &lines, &last);
    CHECK(last == '\n');
    CHECK(made == lines + (rill_accesslog_dropped() - dropped0));
    close(p[0]);
    close(p[1]);
}

/*
 * A file that may not grow past a size that falls inside a line
 * (RLIMIT_FSIZE): the write across it is cut short there, every later one
 * fails (EFBIG). The half line's rest is dropped, each later line begins
 * with the "\n" that ends the half one, and none of those ends is a line:
 * made = whole lines in the file + dropped, exactly.
 */
static void torn_line_end_is_not_a_dropped_line(void)
{
    char path[] = "/tmp/rill-test-accesslog-XXXXXX", err[256];
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    struct rlimit old, cap = {.rlim_cur = 100000 + 77, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    cap.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN); /* the write says EFBIG instead */
    CHECK(setrlimit(RLIMIT_FSIZE, &cap) == 0);
    CHECK(rill_accesslog_open(base, path, 0, err, sizeof err) == 0);
    unsigned long made = 0, dropped0 = rill_accesslog_dropped();
    for (int i = 0; i < 120; i++, made++) /* 300 KB: past the limit, and lines after it */
        one_line(i);
    rill_accesslog_close();
    setrlimit(RLIMIT_FSIZE, &old);
    unsigned long lines = 0;
    char last = '\n';
    size_t size = drain(fd, (size_t)-1, &lines, &last);
    CHECK(size == 100000 + 77); /* it did stop inside a line */
    CHECK(last != '\n');
    unsigned long dropped = rill_accesslog_dropped() - dropped0;
    CHECK(made == lines + dropped);
    if (made != lines + dropped)
        fprintf(stderr, "made %lu, in the file %lu, dropped %lu\n", made, lines, dropped);
    close(fd);
    unlink(path);
}

int main(void)
{
    memset(ua, 'u', sizeof ua - 1);
    memset(target, 'x', sizeof target - 1);
    base = event_base_new();
    slow_reader_costs_no_big_copies();
    torn_line_end_is_not_a_dropped_line();
    event_base_free(base);
    return check_report();
}
