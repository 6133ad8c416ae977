/* nettool: the host side of the network tests and benchmarks (Tools/scripts/build-nettool.sh builds it).
 * Every datagram it sends starts with {u64 sequence, u64 CLOCK_MONOTONIC ns} like the test guest's.
 *
 *   nettool recv PORT SECONDS [echo|until-idle]  receive (and echo) for SECONDS (until-idle: or until the stream stops
 *                                         for 1 s); prints one summary line
 *   nettool send IP PORT PPS COUNT SIZE   send COUNT datagrams of SIZE bytes at PPS (0: as fast as possible)
 *   nettool echo IP PORT PPS SECONDS      send at PPS for SECONDS, receive the echoes, report the largest gap
 *
 * Summary lines are `key=value` pairs: received, bytes, lost, reordered, seconds, l2_bits_per_second
 * (bytes + 42 per datagram of UDP/IPv4/Ethernet headers), max_gap_ms and its start, times in CLOCK_MONOTONIC ns. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t deadline) {
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) return;
        struct timespec t = {(time_t)((deadline - now) / 1000000000ull), (long)((deadline - now) % 1000000000ull)};
        nanosleep(&t, 0);
    }
}

struct tally {
    uint64_t received, bytes, lost, reordered, next, first, last, max_gap, gap_start, previous;
};

static void note(struct tally *t, const uint8_t *data, ssize_t n) {
    uint64_t now = now_ns();
    if (t->received == 0) t->first = now;
    else if (now - t->previous > t->max_gap) {
        t->max_gap = now - t->previous;
        t->gap_start = t->previous;
    }
    t->previous = now;
    t->last = now;
    t->received++;
    t->bytes += (uint64_t)n;
    if (n >= 8) {
        uint64_t sequence;
        memcpy(&sequence, data, 8);
        if (sequence >= t->next) {
            t->lost += sequence - t->next;
            t->next = sequence + 1;
        } else {
            t->reordered++;
            if (t->lost) t->lost--;
        }
    }
}

static void report(const char *what, struct tally *t, uint64_t sent) {
    double seconds = t->received > 1 ? (double)(t->last - t->first) / 1e9 : 0;
    double bits = seconds > 0 ? (double)(t->bytes + 42 * t->received) * 8 / seconds : 0;
    printf("%s sent=%llu received=%llu bytes=%llu lost=%llu reordered=%llu seconds=%.6f l2_bits_per_second=%.0f "
           "packets_per_second=%.0f max_gap_ms=%.3f gap_start_ns=%llu first_ns=%llu last_ns=%llu\n",
           what, (unsigned long long)sent, (unsigned long long)t->received, (unsigned long long)t->bytes,
           (unsigned long long)t->lost, (unsigned long long)t->reordered, seconds, bits,
           seconds > 0 ? (double)(t->received - 1) / seconds : 0, (double)t->max_gap / 1e6,
           (unsigned long long)t->gap_start, (unsigned long long)t->first, (unsigned long long)t->last);
    fflush(stdout);
}

static int udp_socket(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = INADDR_ANY};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) { perror("bind"); exit(1); }
    return fd;
}

static struct sockaddr_in destination(const char *ip, const char *port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, ip, &address.sin_addr) != 1) { fprintf(stderr, "nettool: bad address %s\n", ip); exit(2); }
    return address;
}

static int receive(int argc, char **argv) {
    if (argc < 4) return 2;
    int fd = udp_socket(atoi(argv[2]));
    int echo = argc > 4 && strcmp(argv[4], "echo") == 0;
    int until_idle = argc > 4 && strcmp(argv[4], "until-idle") == 0;
    uint64_t end = now_ns() + (uint64_t)(atof(argv[3]) * 1e9);
    struct tally t = {0};
    static uint8_t buffer[65536];
    printf("listening\n");
    fflush(stdout);
    while (now_ns() < end) {
        /* until-idle: a stream that stopped for a second has ended. */
        if (until_idle && t.received > 0 && now_ns() - t.last > 1000000000ull) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int remaining = (int)((end - now_ns()) / 1000000) + 1;
        if (poll(&p, 1, remaining > 100 ? 100 : remaining) <= 0) continue;
        for (;;) {
            struct sockaddr_in from;
            socklen_t length = sizeof from;
            ssize_t n = recvfrom(fd, buffer, sizeof buffer, MSG_DONTWAIT, (struct sockaddr *)&from, &length);
            if (n < 0) break;
            note(&t, buffer, n);
            if (echo) sendto(fd, buffer, (size_t)n, 0, (struct sockaddr *)&from, length);
        }
    }
    report("recv", &t, 0);
    return 0;
}

static int send_stream(int argc, char **argv) {
    if (argc < 7) return 2;
    struct sockaddr_in to = destination(argv[2], argv[3]);
    double rate = atof(argv[4]);
    uint64_t count = strtoull(argv[5], 0, 10), size = strtoull(argv[6], 0, 10);
    if (size < 16 || size > 65507) return 2;
    int fd = udp_socket(0);
    static uint8_t buffer[65536];
    uint64_t start = now_ns(), sent = 0;
    for (; sent < count; sent++) {
        if (rate > 0) sleep_until(start + (uint64_t)((double)sent * 1e9 / rate));
        uint64_t stamp = now_ns();
        memcpy(buffer, &sent, 8);
        memcpy(buffer + 8, &stamp, 8);
        while (sendto(fd, buffer, size, 0, (struct sockaddr *)&to, sizeof to) < 0 && errno == ENOBUFS) usleep(50);
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("send sent=%llu seconds=%.6f packets_per_second=%.0f\n", (unsigned long long)sent, seconds, seconds > 0 ? sent / seconds : 0);
    return 0;
}

static int echo_stream(int argc, char **argv) {
    if (argc < 6) return 2;
    struct sockaddr_in to = destination(argv[2], argv[3]);
    double rate = atof(argv[4]);
    uint64_t end = now_ns() + (uint64_t)(atof(argv[5]) * 1e9);
    if (rate <= 0) return 2;
    int fd = udp_socket(0);
    struct tally t = {0};
    uint8_t buffer[2048] = {0};
    uint64_t start = now_ns(), sent = 0;
    printf("sending\n");
    fflush(stdout);
    while (now_ns() < end) {
        uint64_t due = start + (uint64_t)((double)sent * 1e9 / rate);
        if (now_ns() >= due) {
            uint64_t stamp = now_ns();
            memcpy(buffer, &sent, 8);
            memcpy(buffer + 8, &stamp, 8);
            sendto(fd, buffer, 64, 0, (struct sockaddr *)&to, sizeof to);
            sent++;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t now = now_ns();
        int wait_ms = due > now ? (int)((due - now) / 1000000) : 0;   /* never negative: that waits forever */
        poll(&p, 1, wait_ms);
        for (;;) {
            ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (n < 0) break;
            note(&t, buffer, n);
        }
    }
    /* Echoes still on their way (a loaded machine may hold them a while). */
    uint64_t drain = now_ns() + 1000000000ull;
    while (now_ns() < drain) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) continue;
        ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n >= 0) note(&t, buffer, n);
    }
    t.lost = sent - t.received;
    report("echo", &t, sent);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    int r = 2;
    if (argc >= 2 && strcmp(argv[1], "recv") == 0) r = receive(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "send") == 0) r = send_stream(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "echo") == 0) r = echo_stream(argc, argv);
    if (r == 2) fprintf(stderr, "usage: nettool recv PORT SECONDS [echo|until-idle] | send IP PORT PPS COUNT SIZE | echo IP PORT PPS SECONDS\n");
    return r;
}
