/* SPDX-License-Identifier: MIT */
#ifndef RILL_LOG_H
#define RILL_LOG_H

/* One line to stderr, after the process's name: "rill: " alone, "rill[PID] worker 2: " ... */
void rill_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Names this process in every line from now on ("master", "worker 2"); NULL: plain "rill: ". */
void rill_log_name(const char *role);

#endif
