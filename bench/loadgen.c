// Load generator for bench/run: thousands of idle watches, and slow readers. Plain HTTP/1.1 to 127.0.0.1 only.
//
//   loadgen watch PORT N WATCH_PATH CREATE_PATH
//       Opens N connections, each sending `GET WATCH_PATH`, and prints `ready <seconds>` once every one has its
//       response head. Then waits for a line on stdin, POSTs a ConfigMap to CREATE_PATH on a new connection and
//       prints `fanout <seconds> <watches that saw the event>`: the time from sending the POST until the last watch
//       received bytes. Exits at EOF on stdin (closing everything). A watch that fails is reported as `error ...`.
//
//   loadgen slow PORT C BYTES_PER_SECOND PATH SECONDS
//       C connections GET PATH and read at most BYTES_PER_SECOND each (in 10 ms steps) for SECONDS or until the
//       body ends; prints `slow <bytes received in total> <connections that reached EOF>`.
//
// Built by bench/run with `cc -O2`. Bounded: it only ever talks to 127.0.0.1 and stops by itself (slow) or when
// stdin closes (watch).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int connect_to(int port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) { perror("socket"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        perror("connect");
        exit(2);
    }
    return fd;
}

static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR)) continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 1000);
            continue;
        }
        if (n <= 0) { perror("send"); exit(2); }
        data += n;
        len -= (size_t)n;
    }
}

enum { CONNECTING, WAITING_HEAD, IDLE, SAW_EVENT, FAILED };

struct watch {
    int fd;
    int state;
    unsigned tail;    // the last four bytes of the head seen so far, to find "\r\n\r\n"
    int got_any;
};

static int watch_mode(int port, int n, const char *path, const char *create_path) {
    raise_nofile();
    struct watch *w = calloc((size_t)n, sizeof *w);
    int ep = epoll_create1(0);
    char request[1024];
    int reqlen = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    double t_start = now();
    int opened = 0, ready = 0, failed = 0, in_flight = 0;
    struct epoll_event events[1024];
    char buf[65536];
    // Connect in waves of at most 256 outstanding, so the listen backlog never overflows.
    while (ready + failed < n) {
        while (opened < n && in_flight < 256) {
            w[opened].fd = connect_to(port, 1);
            w[opened].state = CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
            epoll_ctl(ep, EPOLL_CTL_ADD, w[opened].fd, &ev);
            opened++;
            in_flight++;
        }
        int k = epoll_wait(ep, events, 1024, 30000);
        if (k == 0) { fprintf(stderr, "loadgen: timed out with %d of %d watches ready\n", ready, n); break; }
        for (int i = 0; i < k; i++) {
            struct watch *x = &w[events[i].data.u32];
            if (x->state == CONNECTING && (events[i].events & EPOLLOUT)) {
                int err = 0; socklen_t len = sizeof err;
                getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) { x->state = FAILED; failed++; in_flight--; continue; }
                send_all(x->fd, request, (size_t)reqlen);
                x->state = WAITING_HEAD;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = events[i].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = recv(x->fd, buf, sizeof buf, 0);
                if (got <= 0) {
                    if (got < 0 && errno == EAGAIN) continue;
                    if (x->state != FAILED) { x->state = FAILED; failed++; in_flight--; }
                    continue;
                }
                if (x->state == WAITING_HEAD) {
                    if (!x->got_any) {
                        x->got_any = 1;
                        if (got < 12 || strncmp(buf, "HTTP/1.1 200", 12) != 0) {
                            x->state = FAILED; failed++; in_flight--;
                            continue;
                        }
                    }
                    for (ssize_t j = 0; j < got; j++) {
                        x->tail = (x->tail << 8) | (unsigned char)buf[j];
                        if (x->tail == 0x0d0a0d0au) { x->state = IDLE; ready++; in_flight--; break; }
                    }
                }
            }
        }
    }
    printf("ready %.3f %d failed %d\n", now() - t_start, ready, failed);
    fflush(stdout);
    if (!fgets(buf, sizeof buf, stdin)) return 0;

    // The event: one ConfigMap created through the proxy; every watch should see it.
    int trigger = connect_to(port, 0);
    char body[256];
    int bodylen = snprintf(body, sizeof body,
                           "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"fanout-%ld\"},\"data\":{\"k\":\"v\"}}",
                           (long)getpid());
    char post[1024];
    int postlen = snprintf(post, sizeof post,
                           "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                           "Connection: close\r\n\r\n%s", create_path, bodylen, body);
    double t0 = now();
    send_all(trigger, post, (size_t)postlen);
    int seen = 0;
    double last = t0;
    while (seen < ready) {
        int k = epoll_wait(ep, events, 1024, 10000);
        if (k == 0) break;
        for (int i = 0; i < k; i++) {
            struct watch *x = &w[events[i].data.u32];
            ssize_t got = recv(x->fd, buf, sizeof buf, 0);
            if (got < 0 && errno == EAGAIN) continue;
            if (x->state == IDLE) {
                x->state = got > 0 ? SAW_EVENT : FAILED;
                if (got > 0) { seen++; last = now(); }
            }
            if (got <= 0) epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
        }
    }
    printf("fanout %.3f %d\n", last - t0, seen);
    fflush(stdout);
    close(trigger);
    while (fgets(buf, sizeof buf, stdin)) {}
    return 0;
}

static int slow_mode(int port, int c, long rate, const char *path, double seconds) {
    raise_nofile();
    int *fds = calloc((size_t)c, sizeof *fds);
    int *eof = calloc((size_t)c, sizeof *eof);
    char request[1024];
    int reqlen = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    for (int i = 0; i < c; i++) {
        fds[i] = connect_to(port, 0);
        send_all(fds[i], request, (size_t)reqlen);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    static char buf[1 << 20];
    long long total = 0;
    int ended = 0;
    double start = now(), step = 0.01;
    long per_step = rate / 100;
    while (now() - start < seconds && ended < c) {
        double tick = now();
        for (int i = 0; i < c; i++) {
            if (eof[i]) continue;
            long budget = per_step;
            while (budget > 0) {
                ssize_t n = recv(fds[i], buf, (size_t)(budget < (long)sizeof buf ? budget : (long)sizeof buf), 0);
                if (n > 0) { total += n; budget -= n; continue; }
                if (n == 0 || (errno != EAGAIN && errno != EINTR)) { eof[i] = 1; ended++; }
                break;
            }
        }
        double sleep_for = step - (now() - tick);
        if (sleep_for > 0) {
            struct timespec ts = {0, (long)(sleep_for * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    printf("slow %lld %d\n", total, ended);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "watch") == 0) {
        return watch_mode(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5]);
    }
    if (argc == 7 && strcmp(argv[1], "slow") == 0) {
        return slow_mode(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), argv[5], atof(argv[6]));
    }
    fprintf(stderr, "usage: loadgen watch PORT N WATCH_PATH CREATE_PATH | slow PORT C BYTES_PER_SEC PATH SECONDS\n");
    return 2;
}
