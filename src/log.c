/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char prefix[64] = "rill: ";
static enum rill_log_level threshold = RILL_LOG_INFO;
static int log_fd = 2;       /* stderr, or the --error-log file */
static const char *log_path; /* NULL: stderr */

void rill_log_name(const char *role)
{
    if (role)
        snprintf(prefix, sizeof prefix, "rill[%ld] %s: ", (long)getpid(), role);
    else
        snprintf(prefix, sizeof prefix, "rill: ");
}

int rill_log_set_level(const char *word)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(word, names[i]) == 0) {
            threshold = (enum rill_log_level)i;
            return 0;
        }
    return -1;
}

int rill_log_enabled(enum rill_log_level level)
{
    return level <= threshold;
}

/* Never 0, 1 or 2: started with one closed, the log would take stderr's (or stdout's) place. */
static int open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && fd <= 2) {
        int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        fd = high;
    }
    return fd;
}

int rill_log_open(const char *path)
{
    if (!path || strcmp(path, "-") == 0)
        return 0;
    int fd = open_path(path);
    if (fd < 0)
        return -1;
    log_fd = fd;
    log_path = path;
    return 0;
}

void rill_log_reopen(void)
{
    if (!log_path)
        return;
    int fd = open_path(log_path);
    if (fd < 0) {
        rill_log_at(RILL_LOG_ERROR,
                    "error log: cannot reopen %s: %s (still writing to the old file)", log_path,
                    strerror(errno));
        return;
    }
    /* the same descriptor number, so nothing that holds it goes stale */
    if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
        close(log_fd);
        log_fd = fd;
        return;
    }
    close(fd);
}

void rill_log_check_moved(void)
{
    struct stat named, open_now;
    if (!log_path || fstat(log_fd, &open_now) != 0)
        return;
    if (stat(log_path, &named) != 0 || named.st_dev != open_now.st_dev ||
        named.st_ino != open_now.st_ino)
        rill_log_reopen();
}

/*
 * The message's bytes as they go into a line: a line break is followed by a
 * tab (a traceback stays readable, and a continuation never starts like a
 * line of ours: no text can forge one), other control bytes become \xHH.
 * Returns the bytes written to out, at most cap.
 */
static size_t put_message(char *out, size_t cap, const char *msg, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    while (len > 0 && msg[len - 1] == '\n')
        len--; /* the line's own newline ends it */
    for (size_t i = 0; i < len && o + 4 <= cap; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\n') {
            out[o++] = '\n', out[o++] = '\t';
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            out[o++] = '\\', out[o++] = 'x', out[o++] = hex[c >> 4], out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

static void vlog(enum rill_log_level level, const char *fmt, va_list ap)
{
    static const char *const words[] = {"", "error: ", "warn: ", "", "debug: "};
    if (!rill_log_enabled(level))
        return;
    int saved = errno;
    char msg[4096], line[4096];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
    int n = snprintf(line, sizeof line, "%s%s", prefix, words[level + 1]);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        n = 0;
    size_t len = (size_t)n + put_message(line + n, sizeof line - 1 - (size_t)n, msg, mlen);
    line[len++] = '\n';
    /* one write per line, so lines from a busy loop or several workers never interleave */
    ssize_t w;
    do
        w = write(log_fd, line, len);
    while (w < 0 && errno == EINTR);
    errno = saved;
}

const char *rill_log_safe(const char *s, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *p = s;
    while (*p && (unsigned char)*p >= 0x20 && *p != 0x7f)
        p++;
    if (!*p)
        return s;
    size_t o = 0;
    for (p = s; *p && o + 8 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[c >> 4], buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    if (*p)
        buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
    buf[o] = '\0';
    return buf;
}

void rill_log_at(enum rill_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void rill_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(RILL_LOG_INFO, fmt, ap);
    va_end(ap);
}
