/* SPDX-License-Identifier: MIT */
/*
 * Holds N idle event streams open: connects, asks for PATH, reads the head,
 * then keeps the connections until stdin closes. Prints "holding N" when all
 * are open. For measuring a server's memory per idle stream (bench/run.sh).
 *   hold PORT PATH N
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_stream(int port, const char *path)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    char req[256], head[4096];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n)
        return -1;
    size_t got = 0;
    while (got < sizeof head - 1) { /* until the end of the response head */
        ssize_t r = read(fd, head + got, sizeof head - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        head[got] = '\0';
        if (strstr(head, "\r\n\r\n"))
            return fd;
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: hold PORT PATH N\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[3]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    for (int i = 0; i < n; i++) {
        if (open_stream(port, argv[2]) < 0) {
            fprintf(stderr, "hold: stream %d failed\n", i);
            return 1;
        }
    }
    printf("holding %d\n", n);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) /* until stdin closes */
        ;
    return 0;
}
