/* SPDX-License-Identifier: MIT */
/*
 * rill_signal_events_free leaves no moment where the signal is fatal. A child
 * adds and retires a SIGUSR2 event 2,000 times while the parent sends it
 * SIGUSR2 as fast as it can; the child must exit 0, never die of the signal.
 * With event_free then signal(SIG_IGN) (the old order) the child died in
 * every run here. Bounded: the child's loop is counted and
 * the parent stops sending once it is reaped.
 */
#include "signals.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define ROUNDS 2000

static void on_usr2(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what, (void)arg;
}

/*
 * Each round as in a worker: the handler found at event_add is SIG_DFL. The
 * signal is blocked only while that is so (before the event is added), never
 * across rill_signal_events_free: its own window is what is tested.
 */
static int child_main(int ready)
{
    struct event_base *base = event_base_new();
    sigset_t usr2, none;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, &none);
    if (write(ready, "r", 1) != 1)
        return 4;
    for (int i = 0; i < ROUNDS; i++) {
        signal(SIGUSR2, SIG_DFL);
        struct event *ev[1] = {evsignal_new(base, SIGUSR2, on_usr2, NULL)};
        event_add(ev[0], NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        rill_signal_events_free(ev, 1);
        sigprocmask(SIG_BLOCK, &usr2, NULL);
        if (ev[0] != NULL)
            return 3;
    }
    event_base_free(base);
    return 0;
}

static void survives_a_signal_storm(void)
{
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_main(pipefd[1]));
    char byte;
    CHECK(read(pipefd[0], &byte, 1) == 1);
    close(pipefd[0]);
    close(pipefd[1]);
    int status = 0;
    long sent = 0;
    pid_t reaped;
    alarm(60); /* a child that hangs fails the test rather than hold it forever */
    while ((reaped = waitpid(pid, &status, WNOHANG)) == 0) {
        kill(pid, SIGUSR2);
        sent++;
    }
    alarm(0);
    CHECK(reaped == pid);
    CHECK(sent > 0);
    CHECK(!WIFSIGNALED(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void leaves_the_signal_ignored(void)
{
    struct event_base *base = event_base_new();
    struct event *ev[2] = {NULL, evsignal_new(base, SIGUSR2, on_usr2, NULL)};
    event_add(ev[1], NULL);
    rill_signal_events_free(ev, 2);
    CHECK(ev[1] == NULL);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);
    raise(SIGUSR2); /* ignored: the test goes on */
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    CHECK(!sigismember(&mask, SIGUSR2)); /* the mask is as it was */
    event_base_free(base);
    signal(SIGUSR2, SIG_DFL);
}

int main(void)
{
    survives_a_signal_storm();
    leaves_the_signal_ignored();
    return check_report();
}
