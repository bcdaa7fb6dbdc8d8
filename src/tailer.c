/* SPDX-License-Identifier: MIT */
/* The tail -F engine of rill.tail: plain syscalls, no Lua, tested by ctest. */
#include "tailer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void rill_follow_init(struct rill_follow *f, const char *path)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fd = -1;
}

void rill_follow_close(struct rill_follow *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

/*
 * Whether the file open at fd is one `allowed` accepts, by the path the
 * kernel gives for the descriptor: whatever symlinks or renamed directories
 * led to it. Without /proc the answer is no (fail closed).
 */
static int fd_allowed(struct rill_follow *f, int fd)
{
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n <= 0 || (size_t)n >= sizeof real - 1) {
        snprintf(f->denied, sizeof f->denied, "%.4000s (unresolvable)", f->path);
        return 0;
    }
    real[n] = '\0';
    if (f->allowed(real))
        return 1;
    snprintf(f->denied, sizeof f->denied, "%s", real);
    return 0;
}

/* Opens the path; from: RILL_FROM_END or an offset (past the end: the end). */
int rill_follow_open(struct rill_follow *f, off_t from)
{
    struct stat st;
    int nofollow = f->allowed ? O_NOFOLLOW : 0; /* a final symlink is refused, not followed */
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | nofollow);
    f->refused = 0; /* a plain EACCES (a mode 000 file) is "not readable yet", as for tail -F */
    if (fd < 0 && errno == ELOOP && f->allowed) {
        snprintf(f->denied, sizeof f->denied, "%.4000s (a symlink)", f->path);
        f->refused = 1;
        errno = EACCES;
    }
    if (fd < 0)
        return -1;
    if (f->allowed && !fd_allowed(f, fd)) {
        close(fd);
        f->refused = 1;
        errno = EACCES;
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    rill_follow_close(f);
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->offset = from == RILL_FROM_END || from > st.st_size ? st.st_size : from;
    return 0;
}

/* Whether the path now names a different file than the one we hold. */
static int path_replaced(struct rill_follow *f)
{
    struct stat st;
    if (stat(f->path, &st) != 0)
        return 0; /* gone for now: keep reading the old file */
    return st.st_ino != f->ino || st.st_dev != f->dev;
}

ssize_t rill_follow_read(struct rill_follow *f, char *buf, size_t cap, off_t *at, int *events)
{
    *events = 0;
    if (f->fd < 0) {
        if (rill_follow_open(f, RILL_FROM_START) != 0)
            return f->refused ? -1 : 0; /* refused, or not there (or not readable) yet */
        *events |= RILL_FOLLOW_OPENED;
    }
    for (int switched = 0; switched < 2; switched++) {
        struct stat st;
        if (fstat(f->fd, &st) == 0 && st.st_size < f->offset) {
            f->offset = 0; /* truncated in place */
            *events |= RILL_FOLLOW_TRUNCATED;
        }
        ssize_t n = pread(f->fd, buf, cap, f->offset);
        if (n > 0) {
            *at = f->offset;
            f->offset += n;
            return n;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        /* at the end of this file: if another one took the path, move to it */
        if (!path_replaced(f))
            return 0;
        if (rill_follow_open(f, RILL_FROM_START) != 0)
            return f->refused ? -1 : 0;
        *events |= RILL_FOLLOW_ROTATED;
    }
    return 0;
}

/*
 * The last n lines start right after the (n+1)th newline from the end when
 * the file ends with one, else after the nth: a last line without its newline
 * counts as a line, as in tail -n. The scan reads backwards at most max_scan
 * bytes, so a huge n costs a bounded read on the loop, not the whole file:
 * when the window holds fewer lines, the tail starts at the first line that
 * begins inside it (at the end if none does).
 */
off_t rill_follow_last_lines(struct rill_follow *f, long long n, off_t max_scan)
{
    char block[4096];
    off_t end = f->offset, pos = end, floor = end > max_scan ? end - max_scan : 0, first = end;
    if (n <= 0)
        return end;
    if (n > LLONG_MAX - 1)
        n = LLONG_MAX - 1; /* need = n + 1 below must not overflow */
    int ends_with_newline = end > 0 && pread(f->fd, block, 1, end - 1) == 1 && block[0] == '\n';
    long long need = ends_with_newline ? n + 1 : n, seen = 0;
    while (pos > floor) {
        size_t len = pos - floor < (off_t)sizeof block ? (size_t)(pos - floor) : sizeof block;
        pos -= (off_t)len;
        if (pread(f->fd, block, len, pos) != (ssize_t)len)
            return 0;
        for (size_t i = len; i > 0; i--) {
            if (block[i - 1] != '\n')
                continue;
            if (++seen == need)
                return pos + (off_t)i;
            first = pos + (off_t)i; /* a line starts here */
        }
    }
    if (floor == 0)
        return 0;
    char c;
    if (pread(f->fd, &c, 1, floor - 1) == 1 && c == '\n')
        return floor;
    return first;
}
