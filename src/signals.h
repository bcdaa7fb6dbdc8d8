/* SPDX-License-Identifier: MIT */
#ifndef RILL_SIGNALS_H
#define RILL_SIGNALS_H
#include <event2/event.h>

/*
 * Frees n signal events (NULL entries skipped, each set to NULL) and leaves
 * their signals ignored, with no moment in between where one is fatal.
 */
void rill_signal_events_free(struct event **events, int n);

#endif
