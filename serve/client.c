/* A small blocking HTTP/1.1 client with keep-alive, for the load tester and
 * the tests.  Reads Content-Length bodies (libmicrohttpd's answers here
 * always carry one); a connection the server closed is reopened once. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../reports/reports.h"
#include "internal.h"

struct serve_client {
    struct sockaddr_in addr;
    char host[64];
    double timeout_s;
    int fd;
    kd_buf req;
    char *in; /* bytes received and not yet consumed */
    size_t inlen, incap;
};

serve_client *serve_client_new(const char *host, int port, double timeout_s, kd_err *e)
{
    serve_client *c = kd_calloc(1, sizeof *c);
    if (!c) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    c->addr.sin_family = AF_INET;
    c->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &c->addr.sin_addr) != 1 || port < 1 || port > 65535) {
        kd_free(c);
        kd_err_set(e, KD_ECONFIG, "%s:%d is not an IPv4 address and port", host, port);
        return NULL;
    }
    snprintf(c->host, sizeof c->host, "%s", host);
    c->timeout_s = timeout_s;
    c->fd = -1;
    return c;
}

static void disconnect(serve_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->inlen = 0;
}

void serve_client_free(serve_client *c)
{
    if (!c)
        return;
    disconnect(c);
    kd_buf_free(&c->req);
    kd_free(c->in);
    kd_free(c);
}

static int connect_to(serve_client *c, kd_err *e)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return kd_err_set(e, KD_EIO, "socket: %s", strerror(errno));
    struct timeval tv = {(time_t)c->timeout_s,
                         (suseconds_t)((c->timeout_s - (double)(time_t)c->timeout_s) * 1e6)};
    int one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&c->addr, sizeof c->addr) != 0) {
        int err = errno;
        disconnect(c);
        return kd_err_set(e, KD_EIO, "connect: %s", strerror(err));
    }
    return KD_OK;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads more bytes into c->in: > 0, 0 at end of stream, < 0 on error/timeout. */
static ssize_t fill(serve_client *c)
{
    if (c->incap - c->inlen < 16384) {
        size_t cap = c->incap ? 2 * c->incap : 65536;
        char *p = kd_realloc(c->in, cap);
        if (!p)
            return -1;
        c->in = p;
        c->incap = cap;
    }
    ssize_t k;
    do
        k = recv(c->fd, c->in + c->inlen, c->incap - c->inlen - 1, 0);
    while (k < 0 && errno == EINTR);
    if (k > 0)
        c->inlen += (size_t)k;
    return k;
}

/* Reads one answer; 0, or -1 (then the connection is dropped). */
static int read_answer(serve_client *c, int *status, kd_buf *answer, int *close_after)
{
    char *end;
    for (;;) {
        if (c->in)
            c->in[c->inlen] = 0;
        if (c->in && (end = strstr(c->in, "\r\n\r\n")))
            break;
        if (c->inlen > (1u << 20) || fill(c) <= 0)
            return -1;
    }
    size_t hlen = (size_t)(end - c->in) + 4, blen = 0;
    if (sscanf(c->in, "HTTP/1.%*d %d", status) != 1)
        return -1;
    *close_after = 0;
    for (char *h = strstr(c->in, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
        if (!strncasecmp(h + 2, "Content-Length:", 15))
            blen = strtoull(h + 17, NULL, 10);
        else if (!strncasecmp(h + 2, "Connection: close", 17))
            *close_after = 1;
    }
    while (c->inlen < hlen + blen)
        if (fill(c) <= 0)
            return -1;
    if (answer) {
        answer->len = 0;
        kd_buf_put(answer, c->in + hlen, blen);
        kd_buf_put(answer, "", 1);
        if (answer->failed)
            return -1;
        answer->len--;
    }
    memmove(c->in, c->in + hlen + blen, c->inlen - hlen - blen);
    c->inlen -= hlen + blen;
    return 0;
}

int serve_client_request(serve_client *c, const char *method, const char *path,
                         const char *headers, const char *body, size_t blen, int *status,
                         kd_buf *answer, kd_err *e)
{
    c->req.len = 0;
    rep_bprintf(&c->req, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n\r\n", method,
                path, c->host, headers ? headers : "", blen);
    if (c->req.failed)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = c->fd < 0, close_after = 0;
        if (fresh && connect_to(c, e) != KD_OK)
            return KD_EIO;
        if (send_all(c->fd, c->req.p, c->req.len) == 0 &&
            (!blen || send_all(c->fd, body, blen) == 0) &&
            read_answer(c, status, answer, &close_after) == 0) {
            if (close_after)
                disconnect(c);
            return KD_OK;
        }
        int err = errno;
        disconnect(c);
        if (fresh) /* a kept-alive connection may have been closed by the server: retry */
            return kd_err_set(e, KD_EIO, "%s %s: no answer (%s)", method, path, strerror(err));
    }
    return kd_err_set(e, KD_EIO, "%s %s: no answer", method, path);
}
