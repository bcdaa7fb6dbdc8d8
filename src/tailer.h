/* SPDX-License-Identifier: MIT */
#ifndef RILL_TAILER_H
#define RILL_TAILER_H
#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Following a file by name, as tail -F does: reads from our own offset,
 * rewinds when the file shrinks below it (copytruncate), and when another
 * file appears at the path (rotation by rename or delete and create) it
 * first drains the old file to its end, since writers often go on writing to
 * it until they reopen, then continues at the start of the new one. A path
 * that does not exist yet is waited for.
 *
 * Every open by name is checked, not only the first: with `allowed` set,
 * the final component is opened with O_NOFOLLOW and the real path of the
 * opened descriptor (/proc/self/fd) must pass `allowed`, so a symlink or a
 * directory swapped in after the start cannot lead elsewhere. A refused
 * open fails with EACCES, the path it led to in `denied`.
 */

enum {
    RILL_FOLLOW_OPENED = 1,    /* the file at the path was opened (it appeared) */
    RILL_FOLLOW_TRUNCATED = 2, /* it shrank below our offset: reading restarts at 0 */
    RILL_FOLLOW_ROTATED = 4,   /* a new file took the path: reading continues in it */
};

/* Whether a real (absolute, resolved) path may be read. */
typedef int (*rill_follow_allowed_fn)(const char *real);

struct rill_follow {
    char path[PATH_MAX];
    rill_follow_allowed_fn allowed; /* NULL: no confinement */
    char denied[PATH_MAX];          /* where a refused open led ("" until one is) */
    int refused; /* the last open failed because `allowed` refused it (not a permission error) */
    int fd;      /* -1 while the path has no file */
    dev_t dev;
    ino_t ino;
    off_t offset; /* the next byte to read */
};

/* Starts following path at its end, its start, or offset (from >= 0). */
#define RILL_FROM_END   (-1)
#define RILL_FROM_START 0
void rill_follow_init(struct rill_follow *f, const char *path);
/*
 * Opens the file now if it exists, positioned by from (RILL_FROM_END, or an
 * offset). -1 with errno ENOENT, EACCES etc.; `refused` is set when `allowed` refused it.
 */
int rill_follow_open(struct rill_follow *f, off_t from);
void rill_follow_close(struct rill_follow *f);

/*
 * Reads up to cap new bytes into buf; *events gets RILL_FOLLOW_* bits for
 * what happened first. Returns the bytes read (0: nothing new), -1 on a read
 * error or a refused open (errno EACCES, see `denied`). When it returns
 * bytes, they start at file offset *at.
 */
ssize_t rill_follow_read(struct rill_follow *f, char *buf, size_t cap, off_t *at, int *events);

/*
 * The offset where the last n lines of the open file start (tail -n n),
 * looking back at most max_scan bytes from the end: a line count larger
 * than the lines in that window starts at the window's first whole line.
 */
off_t rill_follow_last_lines(struct rill_follow *f, long long n, off_t max_scan);

#endif
