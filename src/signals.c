/* SPDX-License-Identifier: MIT */
/*
 * Retiring signal events. libevent's event_free puts back the handler it
 * found when the event was added, SIG_DFL for ours: a SIGTERM landing after
 * it and before our SIG_IGN kills a process that is already stopping cleanly.
 * That is a pkill's order exactly: a worker's own SIGTERM starts its stop,
 * the master's relayed one arrives while the worker frees its loop. So the
 * signals are blocked across the swap; one that arrives meanwhile stays
 * pending and is discarded by SIG_IGN (POSIX: ignoring drops a pending signal).
 */
#include "signals.h"

#include <signal.h>

void rill_signal_events_free(struct event **events, int n)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (int i = 0; i < n; i++)
        if (events[i])
            sigaddset(&block, (int)event_get_signal(events[i]));
    sigprocmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < n; i++) {
        if (!events[i])
            continue;
        int sig = (int)event_get_signal(events[i]);
        event_free(events[i]);
        events[i] = NULL;
        signal(sig, SIG_IGN);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
}
