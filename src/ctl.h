/* SPDX-License-Identifier: MIT */
#ifndef RILL_CTL_H
#define RILL_CTL_H

/*
 * `rill reload`, `rill stop` and `rill stats`: signal a running rill named by
 * its pid file and wait for the outcome (stats: print the figures it wrote).
 * argv[0] is "reload", "stop" or "stats"; options are
 * --pid-file PATH (default rill.pid), --timeout SECONDS (default 60) and, for
 * stop, --now (SIGQUIT instead of SIGTERM). Returns the exit status: 0 done,
 * 1 failed (no master, reload refused, timeout), 2 usage.
 */
int rill_ctl_main(int argc, char **argv);

#endif
