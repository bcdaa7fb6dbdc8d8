/* SPDX-License-Identifier: MIT */
/*
 * The --reload watcher (watch.h). It owns one inotify fd, read in a libevent
 * callback, and a debounce timer: every change to a *.lua name in a watched
 * directory pushes the timer 150 ms further, and only the timer calls back,
 * so a save (write, rename, maybe a backup file) or a `git checkout` of many
 * files gives one reload. It never reads the files nor knows what a reload
 * is, and it never calls back from inside the inotify read.
 */
#include "watch.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR)
#define DEBOUNCE_USEC 150000

struct rill_watch {
    int fd;              /* inotify, non-blocking, close-on-exec */
    struct event *read;  /* EV_READ | EV_PERSIST on fd */
    struct event *timer; /* the debounce: fires once per burst */
    rill_watch_fn fn;
    void *arg;
    int *wds; /* the watch descriptors of our directories */
    size_t n, cap;
};

/* Whether wd is one of ours: events of a cleared watch may still be queued. */
static int has_wd(const struct rill_watch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->wds[i] == wd)
            return 1;
    return 0;
}

/* Drops wd from the list (its directory is gone: the kernel sent IN_IGNORED). */
static void drop_wd(struct rill_watch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->wds[i] == wd) {
            w->wds[i] = w->wds[--w->n];
            return;
        }
}

/* Whether the (NUL-padded, len bytes) name of an event ends in ".lua". */
static int is_lua_name(const char *name, size_t len)
{
    size_t n = strnlen(name, len);
    return n > 4 && memcmp(name + n - 4, ".lua", 4) == 0;
}

/* Whether one event is a change that counts; keeps the wd list in step with the kernel. */
static int counts(struct rill_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return 1; /* events were lost: any of them may have been a .lua file */
    if (ev->mask & IN_IGNORED) {
        drop_wd(w, ev->wd);
        return 0;
    }
    if (!has_wd(w, ev->wd) || (ev->mask & IN_ISDIR))
        return 0;
    return is_lua_name(ev->name, ev->len);
}

/* (Re)arms the debounce: a pending timer is pushed back to 150 ms from now. */
static void touch(struct rill_watch *w)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = DEBOUNCE_USEC};
    evtimer_add(w->timer, &tv);
}

/*
 * Drains the inotify fd. The kernel returns whole events only, several per
 * read, each followed by its NUL-padded name of ev->len bytes.
 */
static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct rill_watch *w = arg;
    alignas(struct inotify_event) char buf[4096];
    (void)what;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* EAGAIN: drained */
        int changed = 0;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            changed |= counts(w, ev);
            p += sizeof *ev + ev->len;
        }
        if (changed)
            touch(w);
    }
}

/* The end of a burst: one callback, the last thing done, so fn may free w. */
static void on_quiet(evutil_socket_t fd, short what, void *arg)
{
    struct rill_watch *w = arg;
    (void)fd;
    (void)what;
    w->fn(w->arg);
}

struct rill_watch *rill_watch_new(struct event_base *base, rill_watch_fn fn, void *arg)
{
    struct rill_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->fn = fn;
    w->arg = arg;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0)
        goto fail;
    w->read = event_new(base, w->fd, EV_READ | EV_PERSIST, on_inotify, w);
    w->timer = evtimer_new(base, on_quiet, w);
    if (!w->read || !w->timer || event_add(w->read, NULL) != 0) {
        errno = ENOMEM;
        goto fail;
    }
    return w;
fail:;
    int saved = errno;
    rill_watch_free(w);
    errno = saved;
    return NULL;
}

/* Records wd unless known: the kernel gives the same wd for the same directory inode. */
static int remember(struct rill_watch *w, int wd)
{
    if (has_wd(w, wd))
        return 0;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 8;
        int *wds = realloc(w->wds, cap * sizeof *wds);
        if (!wds) {
            inotify_rm_watch(w->fd, wd);
            errno = ENOMEM;
            return -1;
        }
        w->wds = wds;
        w->cap = cap;
    }
    w->wds[w->n++] = wd;
    return 0;
}

int rill_watch_add_dir(struct rill_watch *w, const char *dir)
{
    int wd = inotify_add_watch(w->fd, dir, WATCH_MASK); /* IN_ONLYDIR: a file is ENOTDIR */
    return wd < 0 ? -1 : remember(w, wd);
}

/* The kernel queues IN_IGNORED for each removed watch; has_wd() then skips them. */
void rill_watch_clear(struct rill_watch *w)
{
    for (size_t i = 0; i < w->n; i++)
        inotify_rm_watch(w->fd, w->wds[i]);
    w->n = 0;
    evtimer_del(w->timer);
}

void rill_watch_free(struct rill_watch *w)
{
    if (!w)
        return;
    if (w->read)
        event_free(w->read);
    if (w->timer)
        event_free(w->timer);
    if (w->fd >= 0)
        close(w->fd);
    free(w->wds);
    free(w);
}
