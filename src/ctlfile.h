/* SPDX-License-Identifier: MIT */
#ifndef RILL_CTLFILE_H
#define RILL_CTLFILE_H

/*
 * The files a running rill leaves beside its pid file for the control
 * commands (ctl.c): <pidfile>.status (the master's reload outcomes) and
 * <pidfile>.stats (`rill stats`'s answer).
 */

/* Replaces path with text at once (a temporary file, then rename). 0, or -1 with errno. */
int rill_ctlfile_replace(const char *path, const char *text);

/*
 * SIGUSR2: writes <pid_file>.stats, "pid <pid> answer <n>" (n counting this
 * process's answers from 1), then own (the writer's own "name value" lines),
 * then the server's figures summed over every worker (rill_metrics_summary).
 * A failure is logged.
 */
void rill_ctlfile_stats(const char *pid_file, const char *own);

/* At exit: <pid_file>.stats removed (the caller checked the pid file is still its own). */
void rill_ctlfile_remove_stats(const char *pid_file);

#endif
