/* SPDX-License-Identifier: MIT */
/*
 * Proxy added latency: this program is both the upstream event stream and
 * the client. It listens on UPSTREAM_PORT, asks the proxy at PROXY_PORT for
 * /relay (the proxy then connects back to it for /events), and for each of N
 * events measures the time from writing it to the upstream socket until the
 * client has it. PROXY_PORT 0 reads the upstream directly: the floor.
 *   proxylat PROXY_PORT UPSTREAM_PORT N
 * Prints "p50 p99 max" in microseconds. Bounded: every wait is at most 5 s.
 */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    return sa;
}

static void die(const char *what)
{
    fprintf(stderr, "proxylat: %s\n", what);
    exit(1);
}

/* Reads from fd, appending to buf, until it holds text (5 s at most). */
static void read_until(int fd, char *buf, size_t cap, size_t *len, const char *text)
{
    while (!strstr(buf, text)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1 || *len + 1 >= cap)
            die("timed out waiting for data");
        ssize_t r = read(fd, buf + *len, cap - 1 - *len);
        if (r <= 0)
            die("connection closed");
        *len += (size_t)r;
        buf[*len] = '\0';
    }
}

static void send_all(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        die("write failed");
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        die("usage: proxylat PROXY_PORT UPSTREAM_PORT N");
    int proxy_port = atoi(argv[1]), up_port = atoi(argv[2]), n = atoi(argv[3]), one = 1;
    struct sockaddr_in up_addr = loopback(up_port);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&up_addr, sizeof up_addr) != 0 || listen(lfd, 8) != 0)
        die("cannot listen on the upstream port");

    struct sockaddr_in target = loopback(proxy_port ? proxy_port : up_port);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&target, sizeof target) != 0)
        die("cannot connect to the proxy");
    send_all(client, proxy_port ? "GET /relay HTTP/1.1\r\nHost: x\r\n\r\n"
                                : "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        die("the proxy never connected upstream");
    int up = accept(lfd, NULL, NULL);
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    static char buf[1 << 16];
    size_t len = 0;
    buf[0] = '\0';
    read_until(up, buf, sizeof buf, &len, "\r\n\r\n");
    send_all(up, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                 "data: warm\n\n");
    len = 0, buf[0] = '\0';
    read_until(client, buf, sizeof buf, &len, "data: warm\n\n");

    double *lat = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        char event[64];
        snprintf(event, sizeof event, "data: %d\n\n", i);
        len = 0, buf[0] = '\0';
        double t0 = now_us();
        send_all(up, event);
        read_until(client, buf, sizeof buf, &len, event);
        lat[i] = now_us() - t0;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("%.1f %.1f %.1f\n", lat[n / 2], lat[n * 99 / 100], lat[n - 1]);
    return 0;
}
