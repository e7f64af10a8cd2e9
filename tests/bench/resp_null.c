/*
 * resp_null.c -- a RESP server that does nothing: the client's ceiling.
 *
 * scripts/bench_node.py drives it with the same redis-benchmark runs as
 * Redis and Moor, so the figures show how fast the client itself goes on
 * this machine.  One thread, epoll, non-blocking sockets; commands are
 * cut with Moor's RESP scanner (net/resp.h) and answered from constants:
 * SET +OK, GET a fixed 100-byte value, PING +PONG, CONFIG GET save and
 * appendonly their usual answers (redis-benchmark asks at start), every
 * other command +OK.  Nothing is stored.
 *
 * usage: resp_null PORT   (binds 127.0.0.1; runs until killed)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/resp.h"

#define NULL_MAX_CONNS 4096
#define NULL_READ 65536

typedef struct conn {
    int fd;
    moor_buf_t in, out;
    moor_resp_scan_t scan;
} conn_t;

static const char VALUE[] = "$100\r\n"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";

static int eq(const moor_resp_arg_t *a, const char *s)
{
    size_t n = strlen(s);

    if (a->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((a->p[i] | 0x20) != s[i])
            return 0;
    return 1;
}

static int answer(conn_t *c, const moor_resp_arg_t *a, uint32_t argc)
{
    const char *r = "+OK\r\n";

    if (eq(&a[0], "get"))
        r = VALUE;
    else if (eq(&a[0], "ping"))
        r = "+PONG\r\n";
    else if (eq(&a[0], "config") && argc > 2 && eq(&a[2], "save"))
        r = "*2\r\n$4\r\nsave\r\n$0\r\n\r\n";
    else if (eq(&a[0], "config") && argc > 2 && eq(&a[2], "appendonly"))
        r = "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
    else if (eq(&a[0], "config"))
        r = "*0\r\n";
    return moor_buf_append(&c->out, r, strlen(r));
}

/* Answers every whole command in c->in; -1 to close. */
static int serve(conn_t *c)
{
    moor_resp_limits_t lim = {1 << 26, 1 << 26, 1 << 16, 1 << 20};
    moor_resp_arg_t a[8];
    size_t off = 0;

    for (;;) {
        uint32_t argc = 0;
        long n = moor_resp_scan(&c->scan, c->in.data + off, c->in.len - off, &lim, &argc);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (argc && (moor_resp_split(c->in.data + off, (size_t)n, argc, a, 8) ||
                     answer(c, a, argc)))
            return -1;
        off += (size_t)n;
    }
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
    return 0;
}

/* Writes what it can of c->out; -1 on a socket error. */
static int flush(conn_t *c)
{
    size_t off = 0;

    while (off < c->out.len) {
        ssize_t w = write(c->fd, c->out.data + off, c->out.len - off);
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    memmove(c->out.data, c->out.data + off, c->out.len - off);
    c->out.len -= off;
    return 0;
}

static void drop(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    moor_buf_free(&c->in);
    moor_buf_free(&c->out);
    free(c);
}

static int on_readable(conn_t *c)
{
    for (;;) {
        ssize_t r;
        if (moor_buf_reserve(&c->in, NULL_READ))
            return -1;
        r = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0)
            return -1;
        c->in.len += (size_t)r;
        if (serve(c))
            return -1;
    }
    return flush(c);
}

static int listen_on(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 511)) {
        perror("resp_null: listen");
        exit(2);
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct epoll_event ev, evs[256];
    int lfd, ep, one = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: resp_null PORT\n");
        return 2;
    }
    lfd = listen_on(atoi(argv[1]));
    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (!(c = calloc(1, sizeof(*c)))) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (on_readable(c))
                drop(ep, c);
        }
    }
}
