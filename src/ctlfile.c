/* SPDX-License-Identifier: MIT */
/*
 * The files beside the pid file that the control commands read (ctlfile.h).
 * Each is replaced whole, by rename, so a reader never sees half of one.
 * The stats file's first line names its writer and its answer's number:
 * `rill stats` waits for a first line other than the one it saw before its
 * signal, so a stale file (another run's, another `rill stats`'s) is never
 * taken for the answer.
 */
#include "ctlfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define STATS_MAX 16384

int rill_ctlfile_replace(const char *path, const char *text)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* a new file of our own: never one planted under the name (a link to another file) */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

void rill_ctlfile_stats(const char *pid_file, const char *own)
{
    static long answers;
    static char text[STATS_MAX]; /* off the stack */
    char path[4096];
    if (!pid_file)
        return;
    if (snprintf(path, sizeof path, "%s.stats", pid_file) >= (int)sizeof path) {
        rill_log_at(RILL_LOG_ERROR, "cannot write the stats: pid file path too long");
        return;
    }
    int n = snprintf(text, sizeof text, "pid %ld answer %ld\n%s", (long)getpid(), ++answers,
                     own ? own : "");
    if (n < 0 || n >= (int)sizeof text)
        n = 0;
    rill_metrics_summary(text + n, sizeof text - (size_t)n);
    if (rill_ctlfile_replace(path, text) != 0)
        rill_log_at(RILL_LOG_ERROR, "cannot write %s: %s", path, strerror(errno));
}

void rill_ctlfile_remove_stats(const char *pid_file)
{
    char path[4096];
    if (pid_file && snprintf(path, sizeof path, "%s.stats", pid_file) < (int)sizeof path)
        unlink(path);
}
