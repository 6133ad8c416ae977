/* Polled virtio-net driver over the legacy virtio-pci I/O BAR: queue 0 receives, queue 1 transmits.
 * Every buffer is one descriptor of VNET_BUFFER bytes holding the 10-byte header and the frame.
 * No interrupts: the used rings are polled (VRING_AVAIL_F_NO_INTERRUPT). */
#include "guest.h"

#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4

static u64 ring_bytes(u16 size) {
    u64 avail_end = 16ull * size + 6 + 2ull * size;
    return ((avail_end + 4095) & ~4095ull) + 6 + 8ull * size;
}

static int setup_queue(struct vnet *d, u16 index, u16 *size, struct vring_desc **desc, struct vring_avail **avail,
                       volatile struct vring_used **used, u8 **buffers) {
    outw(d->io + REG_QUEUE_SEL, index);
    u16 n = inw(d->io + REG_QUEUE_NUM);
    if (n == 0 || (n & (n - 1)) || n > 1024) return -1; /* legacy: the device's size is the ring's */
    u8 *ring = heap_alloc(ring_bytes(n), 4096);
    u8 *data = heap_alloc((u64)n * VNET_BUFFER, 4096);
    if (!ring || !data) return -2;
    memset(ring, 0, ring_bytes(n));
    u64 avail_end = 16ull * n + 6 + 2ull * n;
    *desc = (struct vring_desc *)ring;
    *avail = (struct vring_avail *)(ring + 16ull * n);
    *used = (volatile struct vring_used *)(ring + ((avail_end + 4095) & ~4095ull));
    (*avail)->flags = 1; /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
    *size = n;
    *buffers = data;
    outl(d->io + REG_QUEUE_PFN, (u32)((u64)ring >> 12));
    return 0;
}

int vnet_init(struct vnet *d, u16 io, u32 wanted_features) {
    memset(d, 0, sizeof *d);
    d->io = io;
    outb(io + REG_STATUS, 0);
    outb(io + REG_STATUS, STATUS_ACK);
    outb(io + REG_STATUS, STATUS_ACK | STATUS_DRIVER);
    d->features = inl(io + REG_HOST_FEATURES) & wanted_features;
    outl(io + REG_GUEST_FEATURES, d->features);
    if (setup_queue(d, 0, &d->rx_size, &d->rx_desc, &d->rx_avail, &d->rx_used, &d->rx_buffers) != 0) return -1;
    if (setup_queue(d, 1, &d->tx_size, &d->tx_desc, &d->tx_avail, &d->tx_used, &d->tx_buffers) != 0) return -1;
    for (u16 i = 0; i < 6; i++) d->mac[i] = inb(io + REG_CONFIG + i);
    /* Every receive buffer goes to the device at once. */
    for (u16 i = 0; i < d->rx_size; i++) {
        d->rx_desc[i] = (struct vring_desc){(u64)(d->rx_buffers + (u64)i * VNET_BUFFER), VNET_BUFFER, VRING_DESC_F_WRITE, 0};
        d->rx_avail->ring[i] = i;
    }
    d->rx_avail_idx = d->rx_size;
    __atomic_store_n(&d->rx_avail->idx, d->rx_avail_idx, __ATOMIC_RELEASE);
    for (u16 i = 0; i < d->tx_size; i++)
        d->tx_desc[i] = (struct vring_desc){(u64)(d->tx_buffers + (u64)i * VNET_BUFFER), 0, 0, 0};
    outb(io + REG_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_DRIVER_OK);
    outw(io + REG_QUEUE_NOTIFY, 0);
    return 0;
}

int vnet_link_up(struct vnet *d) { return (inw(d->io + REG_CONFIG + 6) & 1) != 0; }

void vnet_flush(struct vnet *d) {
    if (d->tx_unnotified) {
        outw(d->io + REG_QUEUE_NOTIFY, 1);
        d->tx_unnotified = 0;
    }
}

int vnet_send(struct vnet *d, const void *frame, u32 length, int flush) {
    if (length > VNET_BUFFER - VNET_HEADER) return -1;
    /* Wait for a free slot: the device returns transmit buffers in order. */
    for (u64 spins = 0; (u16)(d->tx_avail_idx - __atomic_load_n(&d->tx_used->idx, __ATOMIC_ACQUIRE)) >= d->tx_size; spins++) {
        vnet_flush(d);
        if (spins > 1000000000ull) return -2;
        cpu_relax();
    }
    u16 slot = d->tx_avail_idx % d->tx_size;
    u8 *buffer = d->tx_buffers + (u64)slot * VNET_BUFFER;
    memset(buffer, 0, VNET_HEADER);
    memcpy(buffer + VNET_HEADER, frame, length);
    d->tx_desc[slot].len = VNET_HEADER + length;
    d->tx_avail->ring[slot] = slot;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    d->tx_avail_idx++;
    __atomic_store_n(&d->tx_avail->idx, d->tx_avail_idx, __ATOMIC_RELEASE);
    d->tx_packets++;
    if (++d->tx_unnotified >= 32 || flush) vnet_flush(d);
    return 0;
}

int vnet_receive(struct vnet *d, void (*handler)(void *context, u8 *frame, u32 length), void *context, int limit) {
    int handled = 0;
    while (handled < limit && d->rx_used_idx != __atomic_load_n(&d->rx_used->idx, __ATOMIC_ACQUIRE)) {
        struct vring_used_elem e = d->rx_used->ring[d->rx_used_idx % d->rx_size];
        d->rx_used_idx++;
        if (e.id < d->rx_size && e.len > VNET_HEADER && e.len <= VNET_BUFFER) {
            d->rx_packets++;
            handler(context, d->rx_buffers + (u64)e.id * VNET_BUFFER + VNET_HEADER, e.len - VNET_HEADER);
        }
        d->rx_avail->ring[d->rx_avail_idx % d->rx_size] = (u16)(e.id < d->rx_size ? e.id : 0);
        d->rx_avail_idx++;
        handled++;
    }
    if (handled) {
        __atomic_store_n(&d->rx_avail->idx, d->rx_avail_idx, __ATOMIC_RELEASE);
        outw(d->io + REG_QUEUE_NOTIFY, 0);
    }
    return handled;
}
