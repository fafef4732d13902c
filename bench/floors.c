// Floor programs for bench/run: the least a proxy can spend on the work proxyd does, measured in the same rig.
// Each does one part of proxyd's work and nothing else, so proxyd (which does all of it) cannot be below them.
//
//   floors epoll PORT BODY_BYTES
//       An HTTP/1.1 responder on 127.0.0.1:PORT with one thread and an edge-triggered epoll set (what Go's
//       netpoller does for kubectl proxy, without goroutines): reads until a short read, then answers every
//       complete request head with one write of BODY_BYTES of body. No TLS, no upstream. Compare with
//       floor-dispatch.swift, the same responder on Dispatch sources: the difference is what Dispatch costs.
//
//   floors sink PORT
//       Accepts one connection on 127.0.0.1:PORT and reads it to the end, discarding the bytes.
//
//   floors relay UPSTREAM_PORT CA_FILE PATH COUNT SINK_PORT
//       Fetches https://127.0.0.1:UPSTREAM_PORT/PATH COUNT times over one TLS connection (HTTP/1.1 keep-alive,
//       OpenSSL reading the socket itself with read-ahead into 64 KiB) and writes every body byte to 127.0.0.1:SINK_PORT: the
//       decrypt-and-forward that a TLS-terminating proxy cannot avoid. Prints
//       `relay <MiB> <CPU ms per MiB, user+system> <MB/s> <CPU ms per MiB in user space>`.
//
//   floors tlsget UPSTREAM_PORT CA_FILE PATH COUNT DEPTH
//       Sends COUNT requests for PATH over one TLS connection (HTTP/1.1, pipelined DEPTH deep, each batch of new
//       requests in one write) and reads the answers: the upstream half of a proxy's work per small request with
//       ideal batching, without HTTP/2 framing or any proxy logic. Prints
//       `tlsget <requests> <CPU us per request, user+system> <CPU us per request in user space>`.
//
// Built by bench/run with `cc -O2 ... -lssl -lcrypto`. Talks only to 127.0.0.1.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int listen_on(int port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(fd, 1024) < 0) die("listen");
    return fd;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// --- epoll responder ---------------------------------------------------------------------------------------------

#define MAX_FD 65536
static unsigned char matched[MAX_FD];   // how much of "\r\n\r\n" each client's input ended with

static _Noreturn void epoll_mode(int port, int body_bytes) {
    char head[128];
    int head_len = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: %d\r\n\r\n", body_bytes);
    size_t response_len = head_len + body_bytes;
    char *response = malloc(response_len);
    memcpy(response, head, head_len);
    memset(response + head_len, 'x', body_bytes);
    size_t out_cap = 64 * response_len;
    char *out = malloc(out_cap);
    static char buf[64 * 1024];

    int lfd = listen_on(port, 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAX_FD) { close(c); continue; }
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    matched[c] = 0;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            size_t heads = 0;
            int closed = 0;
            for (;;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { closed = 1; break; }
                if (r < 0) break;
                for (ssize_t k = 0; k < r; k++) {
                    unsigned char m = matched[fd], b = (unsigned char)buf[k];
                    if (b == '\r') m = (m == 0 || m == 2) ? m + 1 : 1;
                    else if (b == '\n' && (m == 1 || m == 3)) { if (m == 3) { heads++; m = 0; } else m = 2; }
                    else m = 0;
                    matched[fd] = m;
                }
                if ((size_t)r < sizeof buf) break;
            }
            if (heads > 0 && !closed) {
                size_t len = 0;
                while (heads-- > 0 && len + response_len <= out_cap) { memcpy(out + len, response, response_len); len += response_len; }
                if (write(fd, out, len) != (ssize_t)len) closed = 1;
            }
            if (closed) close(fd);   // closing removes it from the epoll set
        }
    }
}

// --- sink ----------------------------------------------------------------------------------------------------------

static int sink_mode(int port) {
    int lfd = listen_on(port, 0);
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) die("accept");
    static char buf[256 * 1024];
    while (read(fd, buf, sizeof buf) > 0) {}
    return 0;
}

// --- TLS relay -----------------------------------------------------------------------------------------------------

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(int user_only) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    return user_only ? user : user + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) { if (errno == EINTR) continue; die("write to sink"); }
        p += w; len -= (size_t)w;
    }
}

/// A verified TLS connection to 127.0.0.1:port (OpenSSL reads and writes the socket itself).
static SSL *tls_connect(int port, const char *ca) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) { ERR_print_errors_fp(stderr); exit(1); }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = connect_to(port);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    // Read ahead into a 64 KiB buffer: one read system call for many records, as proxyd reads 64 KiB at a time.
    SSL_set_read_ahead(ssl, 1);
    SSL_set_default_read_buffer_len(ssl, 64 * 1024);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) != 1) { ERR_print_errors_fp(stderr); exit(1); }
    return ssl;
}

static int relay_mode(int port, const char *ca, const char *path, int count, int sink_port) {
    SSL *ssl = tls_connect(port, ca);
    int sink = connect_to(sink_port);

    char request[512];
    int request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    static char buf[64 * 1024];
    double bytes = 0, t0 = now(), c0 = cpu_seconds(0), u0 = cpu_seconds(1);
    for (int i = 0; i < count; i++) {
        if (SSL_write(ssl, request, request_len) != request_len) { ERR_print_errors_fp(stderr); return 1; }
        // The head: read until "\r\n\r\n", take Content-Length, forward what follows it.
        size_t have = 0;
        char *end = NULL;
        while (!end) {
            int r = SSL_read(ssl, buf + have, (int)(sizeof buf - have - 1));
            if (r <= 0) { ERR_print_errors_fp(stderr); return 1; }
            have += (size_t)r;
            buf[have] = 0;
            end = strstr(buf, "\r\n\r\n");
        }
        char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (!cl || cl > end) { fprintf(stderr, "relay: no Content-Length\n"); return 1; }
        long remaining = strtol(cl + 17, NULL, 10);
        size_t body_start = (size_t)(end + 4 - buf);
        write_all(sink, buf + body_start, have - body_start);
        remaining -= (long)(have - body_start);
        bytes += (double)remaining + (double)(have - body_start);
        while (remaining > 0) {
            int r = SSL_read(ssl, buf, sizeof buf < (size_t)remaining ? (int)sizeof buf : (int)remaining);
            if (r <= 0) { ERR_print_errors_fp(stderr); return 1; }
            write_all(sink, buf, (size_t)r);
            remaining -= r;
        }
    }
    double seconds = now() - t0, cpu = cpu_seconds(0) - c0, user = cpu_seconds(1) - u0, mib = bytes / 1048576.0;
    printf("relay %.1f %.3f %.0f %.3f\n", mib, cpu * 1000 / mib, bytes / 1e6 / seconds, user * 1000 / mib);
    close(sink);
    return 0;
}

static int tlsget_mode(int port, const char *ca, const char *path, int count, int depth) {
    SSL *ssl = tls_connect(port, ca);
    char request[512];
    int request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    char *batch = malloc((size_t)request_len * depth);
    for (int i = 0; i < depth; i++) memcpy(batch + (size_t)i * request_len, request, request_len);
    static char buf[256 * 1024];
    size_t have = 0;
    int sent = 0, done = 0;
    double c0 = cpu_seconds(0), u0 = cpu_seconds(1);
    int first = depth < count ? depth : count;
    if (SSL_write(ssl, batch, request_len * first) != request_len * first) { ERR_print_errors_fp(stderr); return 1; }
    sent = first;
    while (done < count) {
        int r = SSL_read(ssl, buf + have, (int)(sizeof buf - have - 1));
        if (r <= 0) { ERR_print_errors_fp(stderr); return 1; }
        have += (size_t)r;
        // Complete answers in the buffer: head up to "\r\n\r\n", then Content-Length bytes.
        size_t at = 0;
        int answered = 0;
        for (;;) {
            buf[have] = 0;
            char *end = strstr(buf + at, "\r\n\r\n");
            if (!end) break;
            char *cl = strcasestr(buf + at, "\r\ncontent-length:");
            if (!cl || cl > end) { fprintf(stderr, "tlsget: no Content-Length\n"); return 1; }
            size_t total = (size_t)(end + 4 - (buf + at)) + (size_t)strtol(cl + 17, NULL, 10);
            if (at + total > have) break;
            at += total;
            answered++;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        done += answered;
        int more = count - sent < answered ? count - sent : answered;
        if (more > 0) {
            if (SSL_write(ssl, batch, request_len * more) != request_len * more) { ERR_print_errors_fp(stderr); return 1; }
            sent += more;
        }
    }
    double cpu = cpu_seconds(0) - c0, user = cpu_seconds(1) - u0;
    printf("tlsget %d %.2f %.2f\n", count, cpu * 1e6 / count, user * 1e6 / count);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "epoll") == 0) epoll_mode(atoi(argv[2]), atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "sink") == 0) return sink_mode(atoi(argv[2]));
    if (argc == 7 && strcmp(argv[1], "relay") == 0)
        return relay_mode(atoi(argv[2]), argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    if (argc == 7 && strcmp(argv[1], "tlsget") == 0)
        return tlsget_mode(atoi(argv[2]), argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: floors epoll PORT BODY_BYTES | floors sink PORT |"
                    " floors relay UPSTREAM_PORT CA_FILE PATH COUNT SINK_PORT |"
                    " floors tlsget UPSTREAM_PORT CA_FILE PATH COUNT DEPTH\n");
    return 2;
}
