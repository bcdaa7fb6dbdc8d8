/* SPDX-License-Identifier: MIT */
/* Unit tests for the tail -F engine, on real files in a temporary directory. */
#include "tailer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char dir[64], path[128];

static void write_file(const char *p, const char *text, int append)
{
    int fd = open(p, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        perror(p);
    close(fd);
}

/* Reads everything new; returns it (static buffer) and the events seen. */
static const char *read_all(struct rill_follow *f, int *events)
{
    static char out[4096];
    char buf[7]; /* small, so reads span several calls */
    size_t len = 0;
    off_t at;
    int ev;
    *events = 0;
    for (ssize_t n; (n = rill_follow_read(f, buf, sizeof buf, &at, &ev)) > 0;) {
        memcpy(out + len, buf, (size_t)n);
        len += (size_t)n;
        *events |= ev;
    }
    *events |= ev;
    out[len] = '\0';
    return out;
}

static void test_appends_and_truncation(void)
{
    struct rill_follow f;
    int ev;
    write_file(path, "old\n", 0);
    rill_follow_init(&f, path);
    CHECK(rill_follow_open(&f, RILL_FROM_END) == 0 && f.offset == 4);
    CHECK(strcmp(read_all(&f, &ev), "") == 0);
    write_file(path, "one\ntwo", 1);
    CHECK(strcmp(read_all(&f, &ev), "one\ntwo") == 0);
    write_file(path, "x\n", 0); /* copytruncate: shorter than our offset */
    CHECK(strcmp(read_all(&f, &ev), "x\n") == 0 && (ev & RILL_FOLLOW_TRUNCATED));
    rill_follow_close(&f);
}

static void test_rotation(void)
{
    struct rill_follow f;
    int ev;
    char old[160];
    snprintf(old, sizeof old, "%s.1", path);
    write_file(path, "a\n", 0);
    rill_follow_init(&f, path);
    rill_follow_open(&f, RILL_FROM_END);
    rename(path, old);
    write_file(old, "late to the old\n", 1); /* the writer has not reopened yet */
    CHECK(strcmp(read_all(&f, &ev), "late to the old\n") == 0 && ev == 0);
    write_file(old, "last of old\n", 1);
    write_file(path, "new\n", 0); /* a new file at the path */
    CHECK(strcmp(read_all(&f, &ev), "last of old\nnew\n") == 0 && (ev & RILL_FOLLOW_ROTATED));
    unlink(old);
    rill_follow_close(&f);
}

static void test_created_later_and_deleted(void)
{
    struct rill_follow f;
    int ev;
    unlink(path);
    rill_follow_init(&f, path);
    CHECK(rill_follow_open(&f, RILL_FROM_END) == -1);
    CHECK(strcmp(read_all(&f, &ev), "") == 0);
    write_file(path, "born\n", 0);
    CHECK(strcmp(read_all(&f, &ev), "born\n") == 0 && (ev & RILL_FOLLOW_OPENED));
    unlink(path); /* deleted: wait for it to come back */
    CHECK(strcmp(read_all(&f, &ev), "") == 0);
    write_file(path, "again\n", 0);
    CHECK(strcmp(read_all(&f, &ev), "again\n") == 0 && (ev & RILL_FOLLOW_ROTATED));
    rill_follow_close(&f);
}

static void expect_last_within(const char *text, long long n, off_t window, off_t want)
{
    struct rill_follow f;
    write_file(path, text, 0);
    rill_follow_init(&f, path);
    rill_follow_open(&f, RILL_FROM_END);
    off_t got = rill_follow_last_lines(&f, n, window);
    if (got != want) {
        fprintf(stderr, "last %lld lines of %.40s: %lld, want %lld\n", n, text, (long long)got,
                (long long)want);
        failures++;
    }
    rill_follow_close(&f);
}

static void expect_last(const char *text, long long n, off_t want)
{
    expect_last_within(text, n, 1 << 20, want);
}

static void test_last_lines(void)
{
    expect_last("a\nb\nc\n", 2, 2);
    expect_last("a\nb\nc\n", 3, 0);
    expect_last("a\nb\nc\n", 9, 0);
    expect_last("a\nb\nc\n", 0, 6);
    expect_last("a\nb\nc", 1, 4); /* a last line without newline counts */
    expect_last("a\nb\nc", 2, 2);
    expect_last("abc", 1, 0);
    expect_last("", 3, 0);
    char big[20000];
    memset(big, 'x', sizeof big);
    for (int i = 99; i < (int)sizeof big; i += 100)
        big[i] = '\n';
    big[sizeof big - 1] = '\0'; /* 199 lines of 99 x, then 99 x without newline */
    expect_last(big, 3, (off_t)(sizeof big - 1 - 99 - 200));
    expect_last("a\nb\nc\n", LLONG_MAX, 0); /* no overflow counting n + 1 */
    /* the backwards scan stops at its window: the first line starting inside it */
    expect_last_within(big, 1000000, 250, (off_t)(sizeof big - 1 - 99 - 100));
    expect_last_within(big, 1000000, 199, (off_t)(sizeof big - 1 - 99 - 100));
    expect_last_within(big, 1000000, 50, (off_t)(sizeof big - 1)); /* none: the end */
    expect_last_within("a\nb\nc\n", 9, 4, 2);                      /* "b\nc\n" exactly */
}

/* Confinement: only files under dir/ok may be opened, on every open by name. */
static char ok_dir[128];
static int only_ok(const char *real)
{
    size_t n = strlen(ok_dir);
    return strncmp(real, ok_dir, n) == 0 && real[n] == '/';
}

/*
 * A rotation that puts a symlink to a file outside at the path, or a file
 * that appears later as a symlink, is refused (EACCES, `denied` names
 * where it led) instead of followed; so is a directory swapped for a symlink.
 */
static void test_confined_on_every_open(void)
{
    char log[192], outside[192], rotated[200], sub[160], moved[170];
    snprintf(ok_dir, sizeof ok_dir, "%s/ok", dir);
    snprintf(log, sizeof log, "%s/app.log", ok_dir);
    snprintf(outside, sizeof outside, "%s/secret", dir);
    snprintf(rotated, sizeof rotated, "%s.1", log);
    mkdir(ok_dir, 0755);
    write_file(outside, "secret\n", 0);
    write_file(log, "first\n", 0);
    struct rill_follow f;
    int ev;
    rill_follow_init(&f, log);
    f.allowed = only_ok;
    CHECK(rill_follow_open(&f, RILL_FROM_START) == 0);
    CHECK(strcmp(read_all(&f, &ev), "first\n") == 0);
    rename(log, rotated);
    CHECK(symlink(outside, log) == 0); /* the rotation's new file is a symlink out */
    char buf[64];
    off_t at;
    CHECK(rill_follow_read(&f, buf, sizeof buf, &at, &ev) == -1 && errno == EACCES);
    CHECK(strstr(f.denied, "app.log (a symlink)") != NULL);
    rill_follow_close(&f);

    /* appearing later, through a directory swapped for a symlink */
    snprintf(sub, sizeof sub, "%s/sub", ok_dir);
    snprintf(moved, sizeof moved, "%s/elsewhere", dir);
    mkdir(moved, 0755);
    char in_moved[200], in_sub[200];
    snprintf(in_moved, sizeof in_moved, "%s/x.log", moved);
    snprintf(in_sub, sizeof in_sub, "%s/x.log", sub);
    write_file(in_moved, "outside\n", 0);
    CHECK(symlink(moved, sub) == 0);
    rill_follow_init(&f, in_sub);
    f.allowed = only_ok;
    CHECK(rill_follow_read(&f, buf, sizeof buf, &at, &ev) == -1 && errno == EACCES);
    CHECK(strcmp(f.denied, in_moved) == 0);
    rill_follow_close(&f);
    unlink(in_sub);
    unlink(sub);
    unlink(in_moved);
    rmdir(moved);
    unlink(log);
    unlink(rotated);
    unlink(outside);
    rmdir(ok_dir);
}

/*
 * A file it may not read yet (mode 000) is not a confinement refusal: the
 * tail waits for it, as tail -F does, instead of failing. Run as nobody when
 * root, since root reads a mode 000 file anyway.
 */
static int unreadable_waits(const char *file)
{
    if (geteuid() == 0 && setuid(65534) != 0)
        return 0;
    struct rill_follow f;
    char buf[64];
    off_t at;
    int ev;
    rill_follow_init(&f, file);
    f.allowed = only_ok;
    int waits = rill_follow_open(&f, RILL_FROM_START) == -1 && errno == EACCES && !f.refused &&
                rill_follow_read(&f, buf, sizeof buf, &at, &ev) == 0;
    rill_follow_close(&f);
    return waits;
}

static void test_unreadable_is_not_refused(void)
{
    char file[192];
    snprintf(ok_dir, sizeof ok_dir, "%s/ok", dir);
    snprintf(file, sizeof file, "%s/locked.log", ok_dir);
    mkdir(ok_dir, 0755);
    chmod(dir, 0755); /* nobody may look inside */
    write_file(file, "x\n", 0);
    chmod(file, 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(unreadable_waits(file) ? 0 : 1);
    int status = 1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(file);
    rmdir(ok_dir);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/rill-tailer-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/app.log", dir);
    test_appends_and_truncation();
    test_rotation();
    test_created_later_and_deleted();
    test_last_lines();
    test_confined_on_every_open();
    test_unreadable_is_not_refused();
    unlink(path);
    rmdir(dir);
    return check_report();
}
