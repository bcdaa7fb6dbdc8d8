/* SPDX-License-Identifier: MIT */
/*
 * Fan-out throughput: N subscribers of /events/TOPIC, then M sequential
 * publishes on one connection (the next one is sent when the previous reply
 * is complete). A delivery is counted when a subscriber's stream holds the
 * event's payload ("T<nonce>-<seq>", scanned across reads), not per read; the
 * clock stops when every subscriber has the last event. Prints
 * "deliveries seconds deliveries_per_second missing".
 *   fanthru PORT TOPIC N M
 * Bounded: gives up after 30 s.
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

#define TAIL 32 /* bytes kept from the previous read: a payload may straddle two reads */

static int port;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? fd : -1;
}

/* Sends a request and reads until the end of the response head. */
static int subscribe(int fd, const char *topic)
{
    char buf[8192];
    int n =
        snprintf(buf, sizeof buf,
                 "GET /events/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", topic);
    if (write(fd, buf, (size_t)n) != n)
        return -1;
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return 0;
    }
    return -1;
}

/* Length of the first complete response in buf (Content-Length or chunked), 0 if incomplete. */
static size_t reply_len(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = memmem(buf, head, "Content-Length:", 15);
    if (!cl)
        cl = memmem(buf, head, "content-length:", 15);
    if (cl)
        return head + strtoul(cl + 15, NULL, 10) <= len ? head + strtoul(cl + 15, NULL, 10) : 0;
    const char *last = memmem(buf + head - 2, len - head + 2, "\r\n0\r\n\r\n", 7);
    return last ? (size_t)(last - buf) + 7 : 0;
}

struct sub {
    int fd;
    int seen;    /* payloads counted */
    int last;    /* highest sequence number seen */
    size_t tail; /* bytes carried over in keep */
    char keep[TAIL];
};

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: fanthru PORT TOPIC N M\n");
        return 2;
    }
    port = atoi(argv[1]);
    const char *topic = argv[2];
    int n = atoi(argv[3]), m = atoi(argv[4]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    char mark[16];
    snprintf(mark, sizeof mark, "T%06x-", (unsigned)(getpid() ^ (unsigned)time(NULL)) & 0xffffff);
    size_t marklen = strlen(mark);
    int ep = epoll_create1(0);
    struct sub *subs = calloc((size_t)n, sizeof *subs);
    for (int i = 0; i < n; i++) {
        subs[i].fd = connect_to();
        if (subs[i].fd < 0 || subscribe(subs[i].fd, topic) != 0) {
            fprintf(stderr, "fanthru: subscriber %d failed\n", i);
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
    }
    int pub = connect_to();
    struct epoll_event pub_ev = {.events = EPOLLIN, .data.u32 = (uint32_t)n};
    epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pub_ev);
    usleep(200000); /* let the server settle the subscriptions (nchan's arrive after the head) */

    char req[512], rbuf[8192];
    size_t rgot = 0;
    int sent = 0, done = 0;
    long deliveries = 0;
    double t0 = now_s(), t1 = 0;
#define PUBLISH()                                                                                  \
    do {                                                                                           \
        char body[32];                                                                             \
        int bl = snprintf(body, sizeof body, "%s%07d", mark, ++sent);                              \
        int rl_ = snprintf(req, sizeof req,                                                        \
                           "POST /publish/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", \
                           topic, bl, body);                                                       \
        if (write(pub, req, (size_t)rl_) != rl_)                                                   \
            return 1;                                                                              \
    } while (0)
    PUBLISH();
    while (done < n && now_s() - t0 < 30) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int e = 0; e < k; e++) {
            uint32_t i = evs[e].data.u32;
            if (i == (uint32_t)n) { /* the publisher's replies */
                ssize_t r = read(pub, rbuf + rgot, sizeof rbuf - 1 - rgot);
                if (r <= 0) {
                    fprintf(stderr, "fanthru: the publisher's connection ended\n");
                    return 1;
                }
                rgot += (size_t)r;
                size_t len;
                while ((len = reply_len(rbuf, rgot)) > 0) {
                    memmove(rbuf, rbuf + len, rgot - len);
                    rgot -= len;
                    if (sent < m)
                        PUBLISH();
                }
                continue;
            }
            struct sub *s = &subs[i];
            char buf[65536 + TAIL];
            memcpy(buf, s->keep, s->tail);
            ssize_t r = read(s->fd, buf + s->tail, sizeof buf - TAIL);
            if (r <= 0) {
                fprintf(stderr, "fanthru: subscriber %u's stream ended\n", i);
                return 1;
            }
            size_t len = s->tail + (size_t)r, at = 0;
            while (at + marklen + 7 <= len) {
                char *p = memmem(buf + at, len - at, mark, marklen);
                if (!p || (size_t)(p - buf) + marklen + 7 > len)
                    break;
                int seq = atoi(p + marklen);
                if (seq > s->last) {
                    s->last = seq;
                    s->seen++;
                    deliveries++;
                    if (seq == m) {
                        done++;
                        t1 = now_s();
                    }
                }
                at = (size_t)(p - buf) + marklen + 7;
            }
            /* carry what may be the start of the next payload */
            size_t keep = len - at < TAIL ? len - at : TAIL;
            memcpy(s->keep, buf + len - keep, keep);
            s->tail = keep;
        }
    }
    if (done < n) {
        fprintf(stderr, "fanthru: %d of %d subscribers got the last event in 30 s\n", done, n);
        return 1;
    }
    printf("%ld %.4f %.0f %ld\n", deliveries, t1 - t0, (double)deliveries / (t1 - t0),
           (long)n * m - deliveries);
    return 0;
}
