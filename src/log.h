/* SPDX-License-Identifier: MIT */
#ifndef RILL_LOG_H
#define RILL_LOG_H
#include <stddef.h>

/* The error log's levels, most severe first: a line is written when its level is at or
   above --log-level (default info). */
enum rill_log_level {
    RILL_LOG_ALWAYS = -1, /* written at every level, with no level word: SIGUSR1's stats */
    RILL_LOG_ERROR,
    RILL_LOG_WARN,
    RILL_LOG_INFO,
    RILL_LOG_DEBUG
};

/* One info line to the error log, after the process's name: "rill: " alone,
   "rill[PID] worker 2: " ... */
void rill_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * s for a log line, when it holds no control byte; else a copy in buf with
 * each one as \xHH (cut with "..." to fit cap): a name that came from a
 * request (a topic) cannot forge a line.
 */
const char *rill_log_safe(const char *s, char *buf, size_t cap);
/* One line at a level; error, warn and debug lines carry it after the name
   ("rill: error: ..."), info lines do not. */
void rill_log_at(enum rill_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Names this process in every line from now on ("master", "worker 2"); NULL: plain "rill: ". */
void rill_log_name(const char *role);

/* "error", "warn", "info" or "debug": 0, or -1 for another word. */
int rill_log_set_level(const char *word);
/* Whether a line at this level would be written. */
int rill_log_enabled(enum rill_log_level level);
/* The error log's destination: PATH (appended to, created 0644) or NULL / "-" for stderr.
   0, or -1 with errno set. Call before forking: workers inherit the descriptor. */
int rill_log_open(const char *path);
/* SIGUSR1: opens PATH again (logrotate moved it); a failure keeps the old file and says so. */
void rill_log_reopen(void);

/* A worker that loaded its app after a rotation (it got no SIGUSR1 while it started): opens
   PATH again if the file there is not the one it writes to. */
void rill_log_check_moved(void);

#endif
