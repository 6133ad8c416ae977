/* A minimal IPv4 host over virtio-net for the network tests: answers ARP and ICMP echo, echoes UDP,
 * sends a UDP stream. Every UDP payload of the stream starts with {u64 sequence, u64 tsc}.
 *
 * WL_NET_RESPONDER: args[0] = own IPv4 (a.b.c.d as 0xaabbccdd), args[1] = UDP echo port (default 7),
 *   args[2] = print stream statistics every N datagrams (0: never). Runs until powered off.
 * WL_UDP_SEND: args[0] = own IPv4, args[1] = destination IPv4, args[2] = destination port (default 7),
 *   args[3] = datagrams (0: forever), args[4] = payload bytes (16–1472, default 64), args[5] = pause
 *   iterations between datagrams (0: as fast as the ring takes them), args[6] = flags (1: forge the
 *   source MAC address, 2: ping the destination 5 times first, 4: power off when done), args[7] =
 *   source port (default 40000). Counts the datagrams echoed back to it. */
#include "guest.h"

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define FLAG_FORGE 1
#define FLAG_PING 2
#define FLAG_EXIT 4

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 be32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static void put32(u8 *p, u32 v) { p[0] = (u8)(v >> 24); p[1] = (u8)(v >> 16); p[2] = (u8)(v >> 8); p[3] = (u8)v; }

static u16 checksum(const u8 *data, u32 length) {
    u32 sum = 0;
    for (u32 i = 0; i + 1 < length; i += 2) sum += be16(data + i);
    if (length & 1) sum += (u32)data[length - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

struct stream_stats { u64 received, lost, reordered, next; };

struct netif {
    struct vnet dev;
    u32 ip;
    u16 echo_port, own_port;
    int forge;
    u8 forged_mac[6];
    struct { u32 ip; u8 mac[6]; } arp[8];
    int arp_next;
    struct stream_stats stream;
    u64 report_every;
    u64 echoes, icmp_replies, udp_echoed;
    u8 frame[1536];
};

static void arp_learn(struct netif *n, u32 ip, const u8 *mac) {
    for (int i = 0; i < 8; i++)
        if (n->arp[i].ip == ip) { memcpy(n->arp[i].mac, mac, 6); return; }
    n->arp[n->arp_next].ip = ip;
    memcpy(n->arp[n->arp_next].mac, mac, 6);
    n->arp_next = (n->arp_next + 1) % 8;
}

static const u8 *arp_lookup(struct netif *n, u32 ip) {
    for (int i = 0; i < 8; i++)
        if (ip && n->arp[i].ip == ip) return n->arp[i].mac;
    return 0;
}

static u8 *ethernet(struct netif *n, const u8 *destination, u16 type, int forge) {
    memcpy(n->frame, destination, 6);
    memcpy(n->frame + 6, forge ? n->forged_mac : n->dev.mac, 6);
    put16(n->frame + 12, type);
    return n->frame + 14;
}

static void send_arp(struct netif *n, u16 op, const u8 *target_mac, u32 target_ip) {
    static const u8 broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    u8 *a = ethernet(n, op == 1 ? broadcast : target_mac, ETH_ARP, 0);
    put16(a, 1); put16(a + 2, ETH_IP); a[4] = 6; a[5] = 4; put16(a + 6, op);
    memcpy(a + 8, n->dev.mac, 6); put32(a + 14, n->ip);
    if (op == 1) memset(a + 18, 0, 6); else memcpy(a + 18, target_mac, 6);
    put32(a + 24, target_ip);
    memset(a + 28, 0, 14);
    vnet_send(&n->dev, n->frame, 60, 1);
}

/* Sends an IPv4 packet whose payload (`length` bytes) is already at frame + 34. */
static void send_ip(struct netif *n, const u8 *mac, u32 destination, u8 protocol, u32 length, int forge, int flush) {
    u8 *ip = ethernet(n, mac, ETH_IP, forge);
    ip[0] = 0x45; ip[1] = 0; put16(ip + 2, (u16)(20 + length)); put16(ip + 4, 0); put16(ip + 6, 0x4000);
    ip[8] = 64; ip[9] = protocol; put16(ip + 10, 0); put32(ip + 12, n->ip); put32(ip + 16, destination);
    put16(ip + 10, checksum(ip, 20));
    u32 total = 34 + length;
    vnet_send(&n->dev, n->frame, total < 60 ? 60 : total, flush);
}

static void send_udp(struct netif *n, const u8 *mac, u32 destination, u16 source_port, u16 port, const u8 *payload,
                     u32 length, int forge, int flush) {
    u8 *udp = n->frame + 34;
    put16(udp, source_port); put16(udp + 2, port); put16(udp + 4, (u16)(8 + length)); put16(udp + 6, 0);
    if (payload != udp + 8) memcpy(udp + 8, payload, length);
    send_ip(n, mac, destination, 17, 8 + length, forge, flush);
}

static void stream_note(struct stream_stats *s, u64 sequence) {
    s->received++;
    if (sequence >= s->next) {
        s->lost += sequence - s->next;
        s->next = sequence + 1;
    } else {
        s->reordered++;
        if (s->lost) s->lost--;
    }
}

static void handle(void *context, u8 *f, u32 length) {
    struct netif *n = context;
    if (length < 14) return;
    u16 type = be16(f + 12);
    if (type == ETH_ARP && length >= 42) {
        u8 *a = f + 14;
        if (be16(a) != 1 || be16(a + 2) != ETH_IP) return;
        u32 sender = be32(a + 14), target = be32(a + 24);
        if (sender) arp_learn(n, sender, a + 8);
        if (be16(a + 6) == 1 && target == n->ip) send_arp(n, 2, a + 8, sender);
        return;
    }
    if (type != ETH_IP || length < 34) return;
    u8 *ip = f + 14;
    u32 header = (ip[0] & 15) * 4u, total = be16(ip + 2);
    if ((ip[0] >> 4) != 4 || header < 20 || total < header || 14 + total > length || be32(ip + 16) != n->ip) return;
    u32 source = be32(ip + 12);
    u8 *body = ip + header;
    u32 body_length = total - header;
    if (ip[9] == 1 && body_length >= 8) { /* ICMP */
        if (body[0] == 0) { n->icmp_replies++; return; }
        if (body[0] != 8 || body_length > 1400) return;
        memcpy(n->frame + 34, body, body_length);
        n->frame[34] = 0;
        put16(n->frame + 36, 0);
        put16(n->frame + 36, checksum(n->frame + 34, body_length));
        send_ip(n, f + 6, source, 1, body_length, 0, 1);
        return;
    }
    if (ip[9] != 17 || body_length < 8) return;
    u16 source_port = be16(body), port = be16(body + 2), udp_length = be16(body + 4);
    if (udp_length < 8 || udp_length > body_length) return;
    u8 *payload = body + 8;
    u32 payload_length = udp_length - 8u;
    if (port == n->echo_port) {
        if (payload_length >= 8) {
            u64 sequence;
            memcpy(&sequence, payload, 8);
            stream_note(&n->stream, sequence);
            if (n->report_every && n->stream.received % n->report_every == 0)
                gprintf("net: udp received %lu lost %lu reordered %lu\n", n->stream.received, n->stream.lost, n->stream.reordered);
        }
        if (payload_length <= 1472) {
            memcpy(n->frame + 42, payload, payload_length);
            send_udp(n, f + 6, source, port, source_port, n->frame + 42, payload_length, 0, 1);
            n->echoes++;
        }
    } else if (n->own_port && port == n->own_port) {
        n->udp_echoed++;
    }
}

static int net_open(struct netif *n, u32 ip) {
    u16 io = pci_find_virtio_net(0);
    if (!io) {
        gprintf("error: no virtio-net device\n");
        return R_NO_DEVICE;
    }
    if (vnet_init(&n->dev, io, VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS) != 0) {
        gprintf("error: virtio-net setup failed\n");
        return R_DEVICE_SETUP;
    }
    n->ip = ip;
    memcpy(n->forged_mac, n->dev.mac, 6);
    n->forged_mac[5] ^= 0x5a;
    const u8 *m = n->dev.mac;
    gprintf("net: ready ip %u.%u.%u.%u mac %02x:%02x:%02x:%02x:%02x:%02x link %s\n", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
            ip & 255, m[0], m[1], m[2], m[3], m[4], m[5], vnet_link_up(&n->dev) ? "up" : "down");
    marker(0x40);
    return 0;
}

static void poll_for(struct netif *n, u64 ticks) {
    u64 end = rdtsc() + ticks;
    while (rdtsc() < end) {
        if (!vnet_receive(&n->dev, handle, n, 64)) cpu_relax();
    }
}

/* The destination's MAC address by ARP (a request every ~0.1 s, for up to ~30 s). */
static const u8 *resolve(struct netif *n, u32 ip) {
    for (int attempt = 0; attempt < 300; attempt++) {
        const u8 *mac = arp_lookup(n, ip);
        if (mac) return mac;
        send_arp(n, 1, 0, ip);
        for (u64 end = rdtsc() + 250000000ull; rdtsc() < end && !arp_lookup(n, ip);)
            if (!vnet_receive(&n->dev, handle, n, 64)) cpu_relax();
    }
    return arp_lookup(n, ip);
}

static struct netif interface;

int net_responder(const struct params *p) {
    struct netif *n = &interface;
    int r = net_open(n, (u32)p->args[0]);
    if (r) return r;
    n->echo_port = p->args[1] ? (u16)p->args[1] : 7;
    n->report_every = p->args[2];
    for (;;) {
        if (!vnet_receive(&n->dev, handle, n, 64)) cpu_relax();
    }
}

int udp_send(const struct params *p) {
    struct netif *n = &interface;
    int r = net_open(n, (u32)p->args[0]);
    if (r) return r;
    u32 destination = (u32)p->args[1];
    u16 port = p->args[2] ? (u16)p->args[2] : 7;
    u64 count = p->args[3], size = p->args[4] ? p->args[4] : 64, pause = p->args[5], flags = p->args[6];
    n->own_port = p->args[7] ? (u16)p->args[7] : 40000;
    n->echo_port = 7;
    if (size < 16 || size > 1472) return R_BAD_PARAMETERS;
    const u8 *found = resolve(n, destination);
    if (!found) {
        gprintf("error: no ARP reply from %u.%u.%u.%u\n", destination >> 24, (destination >> 16) & 255, (destination >> 8) & 255,
                destination & 255);
        return R_TIMEOUT;
    }
    u8 mac[6];
    memcpy(mac, found, 6);
    gprintf("net: resolved %u.%u.%u.%u to %02x:%02x:%02x:%02x:%02x:%02x\n", destination >> 24, (destination >> 16) & 255,
            (destination >> 8) & 255, destination & 255, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    if (flags & FLAG_PING) {
        for (u16 i = 0; i < 5; i++) {
            u8 *icmp = n->frame + 34;
            icmp[0] = 8; icmp[1] = 0; put16(icmp + 2, 0); put16(icmp + 4, 0x4e54); put16(icmp + 6, i);
            for (int k = 0; k < 56; k++) icmp[8 + k] = (u8)k;
            put16(icmp + 2, checksum(icmp, 64));
            send_ip(n, mac, destination, 1, 64, 0, 1);
            poll_for(n, 100000000ull);
        }
        poll_for(n, 500000000ull);
        gprintf("icmp: 5 sent, %lu replies\n", n->icmp_replies);
    }
    static u8 payload[1472];
    for (u64 i = 0; i < size; i++) payload[i] = (u8)mix64(i);
    marker(0x41);
    u64 sent = 0;
    for (; count == 0 || sent < count; sent++) {
        u64 tsc = rdtsc();
        memcpy(payload, &sent, 8);
        memcpy(payload + 8, &tsc, 8);
        send_udp(n, mac, destination, n->own_port, port, payload, (u32)size, (int)(flags & FLAG_FORGE), 0);
        vnet_receive(&n->dev, handle, n, 64);
        for (u64 k = 0; k < pause; k++) cpu_relax();
    }
    vnet_flush(&n->dev);
    marker(0x42);
    poll_for(n, 2000000000ull);
    gprintf("udp: sent %lu echoed %lu\n", sent, n->udp_echoed);
    if (flags & FLAG_EXIT) return R_SUCCESS;
    for (;;) {
        if (!vnet_receive(&n->dev, handle, n, 64)) cpu_relax();
    }
}
