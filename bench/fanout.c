/* SPDX-License-Identifier: MIT */
/*
 * Fan-out latency: N subscribers of /events/TOPIC, then ROUNDS publishes of
 * one event each; per round, the time from sending the publish until each
 * subscriber's socket has the event, as seen by epoll (the publisher's own
 * reply is read in the same loop, not waited for first). A subscriber has the
 * event when its stream holds that round's payload ("tick-<round>"), not at
 * its first read (nchan sends a comment after the head). Prints p50/p99/max.
 *   fanout PORT N ROUNDS
 * Bounded: each round waits at most 10 s.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int connect_to(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? fd : -1;
}

/* Sends a request and reads until the end of the response head (or all of it). */
static int request(int fd, const char *req, const char *until)
{
    char buf[8192];
    size_t got = 0;
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
        return -1;
    while (got < sizeof buf - 1) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, until))
            return 0;
    }
    return -1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fanout PORT N ROUNDS\n");
        return 2;
    }
    port = atoi(argv[1]);
    int n = atoi(argv[2]), rounds = atoi(argv[3]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int ep = epoll_create1(0);
    int *fds = malloc(sizeof(int) * (size_t)n), *had = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        int fd = connect_to();
        if (fd < 0 ||
            request(fd,
                    "GET /events/bench HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
                    "\r\n\r\n") != 0) {
            fprintf(stderr, "fanout: subscriber %d failed\n", i);
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        fds[i] = fd;
    }
    int pub = connect_to();
    struct epoll_event pub_ev = {.events = EPOLLIN, .data.u32 = (uint32_t)n};
    epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pub_ev);
    double *lat = malloc(sizeof(double) * (size_t)n);
    printf("| round | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n");
    for (int r = 1; r <= rounds; r++) {
        char publish[256], payload[32];
        int pl = snprintf(payload, sizeof payload, "tick-%d\n", r); /* the newline ends it */
        int len =
            snprintf(publish, sizeof publish,
                     "POST /publish/bench HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%.*s",
                     pl - 1, pl - 1, payload);
        double t0 = now_ms();
        /* the publisher's reply is read with the rest: a server may answer it after the fan-out */
        if (write(pub, publish, (size_t)len) != len)
            return 1;
        int got = 0;
        while (got < n && now_ms() - t0 < 10000) {
            struct epoll_event evs[256];
            int k = epoll_wait(ep, evs, 256, 1000);
            double t = now_ms();
            for (int i = 0; i < k; i++) {
                char buf[4096];
                uint32_t s = evs[i].data.u32;
                ssize_t got_bytes = read(s == (uint32_t)n ? pub : fds[s], buf, sizeof buf);
                /* an event is one write: its payload is not split between reads */
                if (s < (uint32_t)n && got_bytes > 0 && had[s] != r &&
                    memmem(buf, (size_t)got_bytes, payload, (size_t)pl)) {
                    had[s] = r;
                    lat[got++] = t - t0;
                }
            }
        }
        if (got < n) {
            fprintf(stderr, "fanout: round %d: %d of %d subscribers got the event\n", r, got, n);
            return 1;
        }
        qsort(lat, (size_t)n, sizeof *lat, cmp);
        printf("| %d | %.3f | %.3f | %.3f |\n", r, lat[n / 2], lat[n * 99 / 100], lat[n - 1]);
        usleep(100000); /* between rounds: the bench's own pacing, not a synchronisation */
    }
    return 0;
}
