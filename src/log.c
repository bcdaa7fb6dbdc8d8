/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static char prefix[64] = "rill: ";

void rill_log_name(const char *role)
{
    if (role)
        snprintf(prefix, sizeof prefix, "rill[%ld] %s: ", (long)getpid(), role);
    else
        snprintf(prefix, sizeof prefix, "rill: ");
}

void rill_log(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one fprintf per line, so lines from a busy loop are never interleaved mid-line */
    fprintf(stderr, "%s%s\n", prefix, line);
}
