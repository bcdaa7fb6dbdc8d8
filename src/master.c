/* SPDX-License-Identifier: MIT */
/*
 * The master: workers, generations, signals. No Lua and no HTTP here.
 *
 * Workers are forks: each loads the app after the fork, so a new
 * generation gets the code as it is on disk now, without an exec. A worker
 * reports READY once its app loaded and the hub snapshot is applied, and
 * accepts connections only when the master says ACCEPT:
 *  - at start, when every worker of the first generation is ready (then
 *    "rill listening on" is printed, as by a single process);
 *  - after a crash, as soon as the replacement is ready;
 *  - at a reload (SIGHUP), when every worker of the new generation is
 *    ready: then the old ones are told to DRAIN. If one of the new workers
 *    fails (a syntax error in the new code) the new generation is killed
 *    before it ever accepted, and the old one serves on.
 * The listening socket stays open here, so no connection queued in it is
 * ever reset by a worker exiting (notes/scale.md §4).
 *
 * The outcome of every reload goes to the status file (<pid file>.status,
 * written by rename) that `rill reload` waits on (ctl.c).
 */
#include "master.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctlfile.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "request.h"
#include "server.h"
#include "signals.h"
#include "watch.h"

#define QUICK_DEATH   1.0  /* a worker dying this soon after its start backs off */
#define MAX_BACKOFF   30.0 /* seconds */
#define START_TIMEOUT 60.0 /* a new generation not ready by then has failed */
#define DRAIN_GRACE   10.0 /* after the drain deadline, old workers are killed */
#define SWAP_WAIT     5.0  /* the longest a reload's outcome waits for the old workers' DRAINING */

enum proc_state { STARTING, READY, SERVING, DRAINING };

struct proc {
    pid_t pid;
    int slot, gen;
    int metrics; /* its slot of the shared metrics (metrics.h), -1: none */
    enum proc_state state;
    double started;  /* monotonic seconds */
    double kill_at;  /* a draining worker still alive then is killed (0: never) */
    int stop_signal; /* sent already */
    int drain_acked; /* DRAINING came: it accepts no connection any more */
    int has_cfg;     /* its hub's bounds came (CONFIG, before READY) */
    struct rill_history_config cfg;
    struct rill_relay_peer *peer;
    struct proc *next;
};

struct master;
struct slot {
    struct master *m;
    int index;
    int quick_deaths;
    struct event *restart;
};

struct master {
    struct rill_master_config cfg;
    struct event_base *base;
    struct rill_relay *relay;
    struct rill_watch *watch;
    struct proc *procs;
    struct proc *leader; /* the worker that runs the `once` background tasks (elect) */
    struct slot *slots;
    int gen;      /* the generation serving (0 before the first is ready) */
    int next_gen; /* the generation starting, 0: none */
    int last_gen; /* generations ever started: a number is never used twice */
    double next_drain;
    int again;          /* a reload was asked for while one was starting */
    double again_drain; /* its drain */
    int start_due;      /* start_ev is active: start a generation from a callback of its own */
    struct event *start_ev;
    double stop_at;    /* when SIGQUIT went out: workers still there 5 s later are killed */
    double swap_until; /* an old worker that has not said DRAINING by then counts as drained */
    sigset_t mask;     /* the signal mask the master started with: the workers' */
    int swapping;      /* promoted: waiting for the old workers to stop accepting */
    int swap_draining; /* how many old workers were told to drain then */
    int reloads;       /* reload attempts finished */
    int stopping;      /* SIGTERM/SIGINT (1) or SIGQUIT (2) */
    int status;        /* the exit status */
    struct event *signals[7];
    struct event *tick, *start_timer;
    char *status_path;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the pid and status files ---------------------------------------------------------- */

static void write_status(struct master *m, const char *error)
{
    char text[4096];
    if (!m->status_path)
        return;
    if (error)
        snprintf(text, sizeof text, "%d failed\n%s\n", m->reloads, error);
    else
        snprintf(text, sizeof text, "%d ok\n", m->reloads);
    if (rill_ctlfile_replace(m->status_path, text) != 0)
        rill_log_at(RILL_LOG_ERROR, "cannot write %s: %s", m->status_path, strerror(errno));
}

static int write_pid_file(struct master *m)
{
    char text[32];
    if (!m->cfg.pid_file)
        return 0;
    snprintf(text, sizeof text, "%ld\n", (long)getpid());
    rill_ctlfile_remove_stats(
        m->cfg.pid_file); /* a crashed run's answer, which `rill stats` would misread */
    if (rill_ctlfile_replace(m->cfg.pid_file, text) != 0)
        return -1;
    size_t n = strlen(m->cfg.pid_file) + sizeof ".status";
    m->status_path = malloc(n);
    if (m->status_path)
        snprintf(m->status_path, n, "%s.status", m->cfg.pid_file);
    write_status(m, NULL);
    return 0;
}

/* Removes the files, if they are still ours. */
static void remove_pid_file(struct master *m)
{
    char text[32] = "";
    FILE *f = m->cfg.pid_file ? fopen(m->cfg.pid_file, "r") : NULL;
    if (!f)
        return;
    if (!fgets(text, sizeof text, f))
        text[0] = '\0';
    fclose(f);
    if (atol(text) != (long)getpid())
        return;
    unlink(m->cfg.pid_file);
    if (m->status_path)
        unlink(m->status_path);
    rill_ctlfile_remove_stats(m->cfg.pid_file);
}

/* ---- processes ---------------------------------------------------------------------------- */

static struct proc *proc_of(struct master *m, pid_t pid)
{
    for (struct proc *p = m->procs; p; p = p->next)
        if (p->pid == pid)
            return p;
    return NULL;
}

static int count(struct master *m, int gen, int state_min)
{
    int n = 0;
    for (struct proc *p = m->procs; p; p = p->next)
        if ((gen < 0 || p->gen == gen) && (int)p->state >= state_min)
            n++;
    return n;
}

static void signal_proc(struct proc *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
}

static void master_free(struct master *m);

/*
 * In the child, right after fork: everything of the master goes, without
 * touching the parent's epoll set (event_reinit first, notes/scale.md §3).
 * Only the listening sockets and the worker's own channel stay open.
 */
static void become_worker(struct master *m, int channel_fd, int slot)
{
    sigset_t mask = m->mask;
    event_reinit(m->base);
    rill_relay_close_all(m->relay); /* a peer whose callback forked us is freed late: close now */
    rill_worker_main main_fn = m->cfg.worker_main;
    void *arg = m->cfg.arg;
    pid_t master_pid = getppid();
    master_free(m); /* freeing its signal events restores the handlers the master started with */
    /*
     * Only now (every signal is still blocked): until the worker's server
     * installs its own, their default would kill it while it loads.
     */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);          /* the terminal's ^C reaches the master too, which stops us */
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the master gone: no correct hub is left */
    if (getppid() != master_pid)
        _exit(1);
    char role[32];
    snprintf(role, sizeof role, "worker %d", slot + 1);
    rill_log_name(role);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    exit(main_fn(arg, channel_fd, slot));
}

/* Forks a worker of generation gen into slot; -1 (logged) if it could not. */
static int spawn(struct master *m, int slot, int gen)
{
    int sv[2];
    struct proc *p = calloc(1, sizeof *p);
    if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        free(p);
        rill_log_at(RILL_LOG_ERROR, "cannot start worker %d: %s", slot + 1, strerror(errno));
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old); /* no signal lands in the child's copy of our handlers */
    int metrics = rill_metrics_reserve();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        free(p);
        rill_metrics_use(metrics);
        rill_random_forked();
        become_worker(m, sv[1], slot);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        free(p);
        rill_metrics_release(metrics, 0);
        rill_log_at(RILL_LOG_ERROR, "cannot fork worker %d: %s", slot + 1, strerror(errno));
        return -1;
    }
    if (metrics < 0)
        rill_log_at(RILL_LOG_WARN, "worker %d has no metrics slot yet: it takes one once one frees",
                    slot + 1);
    *p = (struct proc){
        .pid = pid, .slot = slot, .gen = gen, .metrics = metrics, .started = mono_now()};
    p->peer = rill_relay_add(m->relay, sv[0], (uint64_t)pid, p);
    if (!p->peer) {
        close(sv[0]);
        kill(pid, SIGKILL);
    }
    p->next = m->procs;
    m->procs = p;
    rill_log("worker %d started (pid %ld, generation %d)", slot + 1, (long)pid, gen);
    return 0;
}

static void forget_proc(struct master *m, struct proc *gone)
{
    if (m->leader == gone)
        m->leader = NULL;
    struct proc **pp = &m->procs;
    while (*pp != gone)
        pp = &(*pp)->next;
    *pp = gone->next;
    rill_relay_remove(gone->peer);
    free(gone);
}

static int can_lead(const struct master *m, const struct proc *p)
{
    return p->gen == m->gen && p->state == SERVING && p->pid;
}

/*
 * The `once` background tasks (rill.spawn/every with once = true) run in one
 * worker, which keeps the lead while it serves the current generation; else
 * the serving worker in the lowest slot gets it. Called whenever that may
 * have changed (a generation promoted, a worker restarted or gone); the one
 * that loses the lead hears so first.
 */
static void elect(struct master *m)
{
    if (m->stopping || (m->leader && can_lead(m, m->leader)))
        return;
    struct proc *best = NULL;
    for (struct proc *p = m->procs; p; p = p->next)
        if (can_lead(m, p) && (!best || p->slot < best->slot))
            best = p;
    if (best == m->leader)
        return;
    if (m->leader)
        rill_relay_lead(m->leader->peer, 0);
    m->leader = best;
    if (best)
        rill_relay_lead(best->peer, 1);
}

/* ---- generations ---------------------------------------------------------------------------- */

/*
 * Starts a generation from an event of its own, never inside a relay
 * callback: a child forked there would inherit a channel whose free is
 * deferred (the callback holds it), and keep it open.
 */
static void start_generation(struct master *m, double drain)
{
    if (m->stopping)
        return;
    m->next_gen = ++m->last_gen;
    if (m->next_gen > 1) /* a reload, asked for now or kept for after the one starting then */
        rill_log("reloading: starting generation %d", m->next_gen);
    m->next_drain = drain;
    m->start_due = 1;
    event_active(m->start_ev, EV_TIMEOUT, 1);
    struct timeval tv = {(time_t)START_TIMEOUT, 0};
    evtimer_add(m->start_timer, &tv);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct master *m = arg;
    (void)fd, (void)what;
    if (!m->start_due || !m->next_gen || m->stopping)
        return;
    m->start_due = 0;
    for (int i = 0; i < m->cfg.workers; i++)
        spawn(m, i, m->next_gen);
}

static void stop(struct master *m, int immediate);

/* The new generation cannot serve: it goes, the old one serves on. */
static void generation_failed(struct master *m, const char *why)
{
    if (!m->next_gen)
        return;
    int gen = m->next_gen;
    m->next_gen = 0;
    evtimer_del(m->start_timer);
    for (struct proc *p = m->procs; p; p = p->next)
        if (p->gen == gen)
            signal_proc(p, SIGKILL); /* it never accepted a connection */
    if (m->gen == 0) {               /* the first: nothing serves, as a single process would exit */
        rill_log_at(RILL_LOG_ERROR, "%s", why);
        m->status = 2;
        stop(m, 1);
        return;
    }
    m->reloads++;
    rill_log_at(RILL_LOG_ERROR, "reload failed, generation %d serves on: %s", m->gen, why);
    write_status(m, why);
    if (m->again) {
        m->again = 0;
        start_generation(m, m->again_drain);
    }
}

/*
 * A reload is done once every old worker stopped accepting (DRAINING, or it
 * is gone): only then may `rill reload` say the new code serves, since until
 * an old worker reads its DRAIN it may still take a new connection.
 */
static void finish_reload(struct master *m)
{
    if (!m->swapping)
        return;
    for (struct proc *p = m->procs; p; p = p->next)
        if (p->state == DRAINING && !p->drain_acked && mono_now() < m->swap_until)
            return; /* a stuck one (a handler that never yields) is not waited for long */
    m->swapping = 0;
    m->reloads++;
    rill_log("reloaded: generation %d serves, %d old worker(s) draining", m->gen, m->swap_draining);
    write_status(m, NULL);
    if (m->again) {
        m->again = 0;
        start_generation(m, m->again_drain);
    }
}

/* Every worker of the new generation is ready: it accepts, the old one drains. */
static void promote(struct master *m)
{
    int old = m->gen, draining = 0;
    evtimer_del(m->start_timer);
    m->gen = m->next_gen;
    m->next_gen = 0;
    for (struct proc *p = m->procs; p; p = p->next) {
        if (p->gen == m->gen) {
            p->state = SERVING;
            rill_relay_accept(p->peer);
        } else if (p->gen == old && p->state != DRAINING) {
            p->state = DRAINING;
            p->kill_at = mono_now() + m->next_drain + DRAIN_GRACE;
            rill_relay_drain(p->peer, m->next_drain);
            draining++;
        }
    }
    for (int i = 0; i < m->cfg.workers; i++)
        evtimer_del(m->slots[i].restart); /* the new generation has every slot */
    elect(m); /* after the old ones were told to drain (which ends their tasks) */
    for (struct proc *p = m->procs; p; p = p->next)
        if (p->gen == m->gen && p->has_cfg) { /* the new code's hub.configure, not a failed one's */
            rill_relay_configure(m->relay, &p->cfg);
            break;
        }
    if (old == 0) {
        m->cfg.announce(m->cfg.arg);
        if (m->again) { /* a SIGHUP while the first generation started */
            m->again = 0;
            start_generation(m, m->again_drain);
        }
        return;
    }
    m->swapping = old;
    m->swap_draining = draining;
    m->swap_until = mono_now() + SWAP_WAIT;
    finish_reload(m);
}

static void reload(struct master *m, double drain)
{
    if (m->stopping)
        return;
    if (m->next_gen || m->swapping) {
        m->again = 1; /* after this one: the code may have changed again */
        m->again_drain = drain;
        return;
    }
    start_generation(m, drain);
}

/* ---- relay hooks ----------------------------------------------------------------------------- */

static void on_ready(void *arg, void *owner)
{
    struct master *m = arg;
    struct proc *p = owner;
    if (m->stopping || p->state != STARTING)
        return; /* a worker restarted into an old generation may be DRAINING already */
    p->state = READY;
    if (p->gen == m->next_gen) {
        if (count(m, m->next_gen, READY) == m->cfg.workers)
            promote(m);
    } else if (p->gen == m->gen) { /* a restarted worker */
        p->state = SERVING;
        rill_relay_accept(p->peer);
        elect(m);
    }
}

/*
 * A worker's hub bounds: kept for its generation, and the history's own
 * from now on if that generation serves (hub.configure in a handler).
 */
static void on_config(void *arg, void *owner, const struct rill_history_config *cfg)
{
    struct master *m = arg;
    struct proc *p = owner;
    p->cfg = *cfg;
    p->has_cfg = 1;
    if (p->gen == m->gen && p->state >= SERVING && p->state != DRAINING)
        rill_relay_configure(m->relay, cfg);
}

static void on_draining(void *arg, void *owner)
{
    struct master *m = arg;
    struct proc *p = owner;
    p->drain_acked = 1;
    finish_reload(m);
}

static void on_failed(void *arg, void *owner, const char *msg)
{
    struct master *m = arg;
    struct proc *p = owner;
    if (m->stopping)
        return;
    if (p->gen == m->next_gen)
        generation_failed(m, msg);
    else
        rill_log_at(RILL_LOG_ERROR, "worker %d could not load the app: %s", p->slot + 1, msg);
}

static void on_files(void *arg, void *owner, const char *const *paths, size_t n)
{
    struct master *m = arg;
    struct proc *p = owner;
    (void)p; /* any generation's: a failed one's may name the directory of the file to fix */
    if (!m->watch)
        return;
    for (size_t i = 0; i < n; i++) {
        char dir[4096];
        const char *slash = strrchr(paths[i], '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - paths[i]) : 1,
                 slash ? paths[i] : ".");
        if (rill_watch_add_dir(m->watch, dir[0] ? dir : "/") != 0)
            rill_log("--reload: cannot watch %s: %s", dir, strerror(errno));
    }
}

/*
 * A channel closed: the worker is exiting (its SIGCHLD follows), or it broke
 * the protocol, and then it cannot be trusted with the hub any more.
 */
static void on_lost(void *arg, void *owner, int broken)
{
    struct proc *p = owner;
    (void)arg;
    if (broken)
        signal_proc(p, SIGKILL);
}

static void on_overflow(void *arg, void *owner)
{
    struct master *m = arg;
    struct proc *p = owner;
    rill_log_at(RILL_LOG_WARN,
                "worker %d (pid %ld) does not read its hub events (over %zu bytes queued): killed, "
                "it will be restarted",
                p->slot + 1, (long)p->pid, m->cfg.max_queue);
    signal_proc(p, SIGKILL);
}

/* ---- deaths and restarts ------------------------------------------------------------------------
 */

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

static void on_restart(evutil_socket_t fd, short what, void *arg);

/* A serving worker died: a new one takes its slot, at once, or later if it keeps dying young. */
static void schedule_restart(struct master *m, int slot, double lived)
{
    struct slot *s = &m->slots[slot];
    s->quick_deaths = lived < QUICK_DEATH ? s->quick_deaths + 1 : 0;
    double delay = 0; /* 1, 2, 4 ... 30 s after the first, second, third... quick death */
    for (int i = 0; i < s->quick_deaths && delay < MAX_BACKOFF; i++)
        delay = delay ? delay * 2 : 1;
    if (delay > MAX_BACKOFF)
        delay = MAX_BACKOFF;
    if (delay > 0)
        rill_log_at(RILL_LOG_WARN, "worker %d died %.1f s after its start: restarting it in %.0f s",
                    slot + 1, lived, delay);
    struct timeval tv = {(time_t)delay, 0};
    evtimer_add(s->restart, &tv);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
    struct slot *s = arg;
    (void)fd, (void)what;
    struct timeval again = {1, 0};
    if (!s->m->stopping && s->m->gen && spawn(s->m, s->index, s->m->gen) != 0)
        evtimer_add(s->restart,
                    &again); /* out of processes or memory: the slot is not left empty */
}

static void reaped(struct master *m, struct proc *p, int status)
{
    char how[96];
    describe_exit(status, how, sizeof how);
    pid_t pid = p->pid;
    p->pid = 0; /* reaped: a hook below must not signal a pid that may be another's now */
    rill_relay_read_now(p->peer); /* a FAILED it sent says more than its exit */
    int was_serving = p->gen == m->gen && p->state != DRAINING;
    int was_next = m->next_gen && p->gen == m->next_gen;
    int slot = p->slot;
    double lived = mono_now() - p->started;
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    rill_log_at(clean || m->stopping ? RILL_LOG_INFO : RILL_LOG_WARN,
                "worker %d (pid %ld, generation %d) %s", slot + 1, (long)pid, p->gen, how);
    rill_metrics_release(p->metrics, (long)pid); /* its gauges go; its counters stay summed */
    forget_proc(m, p);
    elect(m); /* the lead, if it held it, goes to another serving worker */
    if (m->swapping && !m->stopping)
        finish_reload(m); /* a worker gone accepts nothing either */
    if (m->stopping) {
        if (!m->procs)
            event_base_loopexit(m->base, NULL);
        return;
    }
    if (was_next) {
        char why[160];
        snprintf(why, sizeof why, "a worker of the new code %s before it was ready", how);
        generation_failed(m, why);
    } else if (was_serving) {
        schedule_restart(m, slot, lived);
    }
}

static void on_child(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct proc *p = proc_of(m, pid);
        if (p)
            reaped(m, p, status);
    }
}

/* ---- signals and timers ---------------------------------------------------------------------- */

/* SIGTERM/SIGINT: every worker stops gracefully (as a single process does); SIGQUIT: at once. */
static void stop(struct master *m, int immediate)
{
    if (m->stopping && !immediate) {
        rill_log("second signal: stopping the workers now");
        immediate = 1;
    }
    m->stopping = immediate ? 2 : 1;
    m->again = 0;
    m->stop_at = mono_now();
    evtimer_del(m->start_timer);
    for (int i = 0; i < m->cfg.workers; i++)
        evtimer_del(m->slots[i].restart);
    for (struct proc *p = m->procs; p; p = p->next) /* one still loading has no handler yet */
        signal_proc(p, !immediate ? SIGTERM : p->state == STARTING ? SIGKILL : SIGQUIT);
    if (!m->procs)
        event_base_loopexit(m->base, NULL);
}

/*
 * SIGUSR2 (`rill stats`): the master's stats line, each worker's (a loading
 * one ignores the signal), and <pidfile>.stats: the master's figures, then
 * the workers' summed from their metric slots.
 */
static void print_stats(struct master *m)
{
    struct rill_history_stats st;
    size_t queue;
    char own[512];
    rill_relay_stats(m->relay, &st, &queue);
    int serving = count(m, m->gen, SERVING) - count(m, m->gen, DRAINING),
        starting = m->next_gen ? count(m, m->next_gen, STARTING) : 0,
        draining = count(m, -1, DRAINING);
    rill_log_at(RILL_LOG_ALWAYS,
                "stats workers=%d starting=%d draining=%d generation=%d reloads=%d topics=%ld "
                "events=%ld history_bytes=%ld max_queue=%zu",
                serving, starting, draining, m->gen, m->reloads, st.topics, st.events, st.bytes,
                queue);
    for (struct proc *p = m->procs; p; p = p->next)
        signal_proc(p, SIGUSR2);
    snprintf(own, sizeof own,
             "role master\nworkers_serving %d\nworkers_starting %d\nworkers_draining %d\n"
             "generation %d\nreloads %d\nrelay_topics %ld\nrelay_events %ld\n"
             "relay_history_bytes %ld\nrelay_max_queue %zu\n",
             serving, starting, draining, m->gen, m->reloads, st.topics, st.events, st.bytes,
             queue);
    rill_ctlfile_stats(m->cfg.pid_file, own);
}

/* SIGUSR1 (logrotate): the master's logs opened again, then each worker's. */
static void reopen_logs(struct master *m)
{
    rill_log_reopen();
    rill_log("logs reopened");
    /* a loading worker ignores it (become_worker), then checks its logs were not moved */
    for (struct proc *p = m->procs; p; p = p->next)
        signal_proc(p, SIGUSR1);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct master *m = arg;
    (void)what;
    switch (sig) {
    case SIGCHLD: on_child(m); break;
    case SIGHUP: reload(m, m->cfg.drain_timeout); break;
    case SIGUSR1: reopen_logs(m); break;
    case SIGUSR2: print_stats(m); break;
    case SIGQUIT: stop(m, 1); break;
    default: stop(m, 0); break;
    }
}

/*
 * Once a second: draining workers past their deadline are killed, and so are
 * workers a SIGQUIT did not end within 5 s (stuck in C: a blocking call).
 */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct master *m = arg;
    double now = mono_now();
    (void)fd, (void)what;
    if (m->swapping && !m->stopping && now > m->swap_until)
        finish_reload(m);
    if (m->stopping == 2 && now > m->stop_at + 5)
        for (struct proc *p = m->procs; p; p = p->next)
            if (p->stop_signal != SIGKILL) {
                p->stop_signal = SIGKILL;
                signal_proc(p, SIGKILL);
            }
    for (struct proc *p = m->procs; p; p = p->next) {
        if (p->state == DRAINING && p->kill_at && now > p->kill_at && !p->stop_signal) {
            rill_log_at(RILL_LOG_WARN,
                        "worker %d (pid %ld) still draining after its deadline: killed",
                        p->slot + 1, (long)p->pid);
            p->stop_signal = SIGKILL;
            signal_proc(p, SIGKILL);
        }
    }
}

static void on_start_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    generation_failed(arg, "the new workers were not ready within 60 s");
}

static void on_change(void *arg)
{
    struct master *m = arg;
    rill_log("--reload: a Lua file changed");
    reload(m, 0);
}

/* ---- run ---------------------------------------------------------------------------------------
 */

static const int SIGNALS[] = {SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGTERM, SIGINT};
#define NSIGNALS ((int)(sizeof SIGNALS / sizeof SIGNALS[0]))

static int master_setup(struct master *m)
{
    struct rill_relay_hooks hooks = {.ready = on_ready,
                                     .draining = on_draining,
                                     .failed = on_failed,
                                     .files = on_files,
                                     .config = on_config,
                                     .lost = on_lost,
                                     .overflow = on_overflow,
                                     .arg = m};
    m->base = event_base_new();
    if (!m->base)
        return -1;
    m->relay = rill_relay_new(m->base, m->cfg.max_queue, &hooks);
    m->slots = calloc((size_t)m->cfg.workers, sizeof *m->slots);
    m->tick = event_new(m->base, -1, EV_PERSIST, on_tick, m);
    m->start_timer = evtimer_new(m->base, on_start_timeout, m);
    m->start_ev = event_new(m->base, -1, 0, on_start, m);
    if (!m->relay || !m->slots || !m->tick || !m->start_timer || !m->start_ev)
        return -1;
    sigprocmask(SIG_SETMASK, NULL, &m->mask);
    for (int i = 0; i < m->cfg.workers; i++) {
        m->slots[i] = (struct slot){m, i, 0, evtimer_new(m->base, on_restart, &m->slots[i])};
        if (!m->slots[i].restart)
            return -1;
    }
    for (int i = 0; i < NSIGNALS; i++) {
        m->signals[i] = evsignal_new(m->base, SIGNALS[i], on_signal, m);
        if (!m->signals[i] || event_add(m->signals[i], NULL) != 0)
            return -1;
    }
    struct timeval one = {1, 0};
    event_add(m->tick, &one);
    if (m->cfg.watch && !(m->watch = rill_watch_new(m->base, on_change, m)))
        return -1;
    return 0;
}

static void master_free(struct master *m)
{
    while (m->procs) {
        struct proc *p = m->procs;
        m->procs = p->next;
        rill_relay_remove(p->peer);
        free(p);
    }
    rill_relay_free(m->relay);
    for (int i = 0; m->slots && i < m->cfg.workers; i++)
        if (m->slots[i].restart)
            event_free(m->slots[i].restart);
    free(m->slots);
    for (int i = 0; i < NSIGNALS; i++)
        if (m->signals[i])
            event_free(m->signals[i]);
    if (m->tick)
        event_free(m->tick);
    if (m->start_timer)
        event_free(m->start_timer);
    if (m->start_ev)
        event_free(m->start_ev);
    rill_watch_free(m->watch);
    free(m->status_path);
    if (m->base)
        event_base_free(m->base);
    free(m);
}

int rill_master_run(const struct rill_master_config *cfg)
{
    struct master *m = calloc(1, sizeof *m);
    if (!m)
        return 1;
    m->cfg = *cfg;
    rill_log_name("master");
    /* room for every worker of two generations at once, and a few restarting */
    if (rill_metrics_init(4 * cfg->workers + 8) != 0 || master_setup(m) != 0) {
        rill_log_at(RILL_LOG_ERROR, "cannot start: out of memory");
        master_free(m);
        return 1;
    }
    if (write_pid_file(m) != 0) {
        rill_log_at(RILL_LOG_ERROR, "cannot write the pid file %s: %s", cfg->pid_file,
                    strerror(errno));
        master_free(m);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    start_generation(m, 0);
    event_base_dispatch(m->base);
    int status = m->status;
    /* here, not in master_free: a new worker needs SIGCHLD's and SIGTERM's defaults back */
    rill_signal_events_free(m->signals, NSIGNALS); /* a late SIGTERM must not kill the exit */
    signal(SIGCHLD, SIG_DFL);                      /* ignored, it would reap children itself */
    remove_pid_file(m);
    rill_log("stopped");
    master_free(m);
    return status;
}
