/* SPDX-License-Identifier: MIT */
#ifndef RILL_LOG_H
#define RILL_LOG_H

/* One line (or a traceback) to stderr, prefixed "rill: ". stderr is the error log. */
void rill_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
