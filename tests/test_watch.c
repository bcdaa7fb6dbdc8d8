/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the --reload watcher, on a real temporary directory. The
 * loop runs in bounded slices (event_base_loopexit), so no test can hang:
 * the whole file takes under 2 s.
 */
#include "watch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static struct event_base *base;
static char dir[64];
static int calls;
static double last_call;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_change(void *arg)
{
    (void)arg;
    calls++;
    last_call = now_ms();
}

/* Runs the loop for ms milliseconds, whatever is pending. */
static void run_for(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Writes text to dir/name, as an editor that writes in place does. */
static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        perror(path);
    close(fd);
}

/* Saves as vim or VS Code do: a temporary file renamed over the old one. */
static void save_by_rename(const char *name, const char *text)
{
    char tmp[128], path[128];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(tmp + strlen(dir) + 1, text);
    if (rename(tmp, path) != 0)
        perror(path);
}

static void test_rename_gives_one_debounced_call(struct rill_watch *w)
{
    calls = 0;
    CHECK(rill_watch_add_dir(w, dir) == 0);
    CHECK(rill_watch_add_dir(w, dir) == 0); /* idempotent */
    double saved = now_ms();
    save_by_rename("app.lua", "return 1\n");
    run_for(300);
    CHECK(calls == 1);
    CHECK(last_call - saved >= 140);
}

static void test_other_names_give_none(void)
{
    calls = 0;
    write_file("notes.txt", "x\n");
    write_file("app.lua.swp", "x\n");
    run_for(250);
    CHECK(calls == 0);
}

static void test_burst_gives_one_call(void)
{
    calls = 0;
    for (int i = 0; i < 3; i++) {
        write_file("burst.lua", "return 2\n");
        run_for(20); /* the loop reads each write: the timer is pushed back twice */
    }
    double last_write = now_ms() - 20;
    run_for(300);
    CHECK(calls == 1);
    CHECK(last_call - last_write >= 140);
}

static void test_delete_counts(void)
{
    calls = 0;
    char path[128];
    snprintf(path, sizeof path, "%s/burst.lua", dir);
    CHECK(unlink(path) == 0);
    run_for(300);
    CHECK(calls == 1);
}

static void test_clear_stops_calls(struct rill_watch *w)
{
    calls = 0;
    write_file("app.lua", "return 3\n");
    run_for(20); /* read, so the debounce timer is pending when clear() runs */
    rill_watch_clear(w);
    write_file("app.lua", "return 4\n");
    run_for(250);
    CHECK(calls == 0);
    CHECK(rill_watch_add_dir(w, dir) == 0); /* a new list after a reload */
    write_file("app.lua", "return 5\n");
    run_for(300);
    CHECK(calls == 1);
}

static void test_bad_dirs(struct rill_watch *w)
{
    char path[128];
    snprintf(path, sizeof path, "%s/missing", dir);
    errno = 0;
    CHECK(rill_watch_add_dir(w, path) == -1 && errno == ENOENT);
    snprintf(path, sizeof path, "%s/app.lua", dir);
    errno = 0;
    CHECK(rill_watch_add_dir(w, path) == -1 && errno == ENOTDIR);
}

/* Removes the files the tests made, then the directory. */
static void cleanup(void)
{
    const char *names[] = {"app.lua", "notes.txt", "app.lua.swp", "burst.lua"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/rill_watch_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    base = event_base_new();
    struct rill_watch *w = rill_watch_new(base, on_change, NULL);
    CHECK(w != NULL);
    if (w) {
        test_rename_gives_one_debounced_call(w);
        test_other_names_give_none();
        test_burst_gives_one_call();
        test_delete_counts();
        test_clear_stops_calls(w);
        test_bad_dirs(w);
    }
    rill_watch_free(w);
    event_base_free(base);
    cleanup();
    return check_report();
}
