/* SPDX-License-Identifier: MIT */
#ifndef RILL_WATCH_H
#define RILL_WATCH_H

#include <event2/event.h>

/*
 * The directory watcher of `rill --reload` (the master's, no Lua): inotify on
 * the directories that hold the app's Lua files, one callback per burst of
 * changes to *.lua files, 150 ms after the burst's last change. Directories,
 * not files, because editors save by writing a temporary file and renaming
 * it over the old one, which replaces the inode a file watch would follow.
 */
struct rill_watch;
typedef void (*rill_watch_fn)(void *arg);

/* A watcher with no directories yet; NULL with errno (inotify limits, memory). */
struct rill_watch *rill_watch_new(struct event_base *base, rill_watch_fn fn, void *arg);
/* Watches dir; adding it again is a no-op. 0, or -1 with errno (ENOENT, ENOTDIR, ENOSPC). */
int rill_watch_add_dir(struct rill_watch *w, const char *dir);
/* Forgets every directory and any pending callback (a reload gives a new list). */
void rill_watch_clear(struct rill_watch *w);
/* Closes the inotify fd and frees w; NULL is a no-op. */
void rill_watch_free(struct rill_watch *w);

#endif
