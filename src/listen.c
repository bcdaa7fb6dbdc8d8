/* SPDX-License-Identifier: MIT */
/*
 * --listen addresses: parsed, bound, announced. The ready line is the
 * contract with whoever starts rill (rill.test, systemd units, scripts):
 * one line per listener, in the order given, each naming its scheme and the
 * port bound (a port 0 becomes the one the kernel chose).
 */
#include "listen.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rill_listen_parse(const char *arg, struct rill_listen *l)
{
    l->tls = 0;
    l->fd = -1;
    if (strncmp(arg, "https://", 8) == 0)
        arg += 8, l->tls = 1;
    else if (strncmp(arg, "http://", 7) == 0)
        arg += 7;
    const char *colon = strrchr(arg, ':');
    if (!colon)
        return -1;
    size_t hl = (size_t)(colon - arg);
    const char *h = arg;
    if (hl >= 2 && arg[0] == '[' && arg[hl - 1] == ']')
        h++, hl -= 2;
    if (hl >= sizeof l->host || memchr(h, '/', hl))
        return -1;
    memcpy(l->host, h, hl);
    l->host[hl] = '\0';
    if (hl == 0)
        strcpy(l->host, "0.0.0.0");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || !isdigit((unsigned char)colon[1]) || p > 65535)
        return -1;
    l->port = (int)p;
    return 0;
}

int rill_listen_bind(struct rill_listen *l, int backlog, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *ai;
    char service[16];
    snprintf(service, sizeof service, "%d", l->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(l->host, service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", l->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* inherited by accepted sockets: SSE lines go out at once */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", l->host, l->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    l->fd = fd;
    return fd < 0 ? -1 : 0;
}

void rill_listen_announce(const struct rill_listen *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(host, sizeof host, "%s", l->host); /* what was asked for, then */
        snprintf(port, sizeof port, "%d", l->port);
    }
    int v6 = ss.ss_family == AF_INET6;
    fprintf(stderr, "rill listening on %s://%s%s%s:%s\n", l->tls ? "https" : "http", v6 ? "[" : "",
            host, v6 ? "]" : "", port);
    fflush(stderr);
}
