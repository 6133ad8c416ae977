/* Polled virtio-blk driver over the legacy virtio-pci I/O BAR. Requests use descriptor slots of
 * four (header, data, [data], status); completion is seen in the used ring, no interrupts. */
#include "guest.h"

#define STATUS_ACK 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4

#define SLOT_DESCRIPTORS 4
#define POLL_LIMIT 200000000ul
u64 vblk_poll_limit = POLL_LIMIT;

u8 vblk_device_status(struct vblk *d) { return inb(d->io + REG_STATUS); }

int vblk_init(struct vblk *d, u16 io) { return vblk_init_with(d, io, VBLK_DEFAULT_FEATURES); }

int vblk_init_with(struct vblk *d, u16 io, u32 features) {
    d->io = io;
    outb(io + REG_STATUS, 0); /* reset */
    outb(io + REG_STATUS, STATUS_ACK);
    outb(io + REG_STATUS, STATUS_ACK | STATUS_DRIVER);
    d->features = inl(io + REG_HOST_FEATURES);
    outl(io + REG_GUEST_FEATURES, d->features & features);
    outw(io + REG_QUEUE_SEL, 0);
    d->qsize = inw(io + REG_QUEUE_NUM);
    if (d->qsize == 0 || (d->qsize & (d->qsize - 1))) return -1;
    u64 avail_end = 16ull * d->qsize + 6 + 2ull * d->qsize;
    u64 used_offset = (avail_end + 4095) & ~4095ull;
    u64 bytes = used_offset + 6 + 8ull * d->qsize;
    if (!d->ring_memory) {
        d->ring_memory = heap_alloc(bytes, 4096);
        d->headers = heap_alloc(sizeof(struct blk_header) * d->qsize, 64);
        d->statuses = heap_alloc(d->qsize, 64);
        if (!d->ring_memory || !d->headers || !d->statuses) return -2;
    }
    memset(d->ring_memory, 0, bytes);
    d->desc = d->ring_memory;
    d->avail = (struct vring_avail *)((u8 *)d->ring_memory + 16ull * d->qsize);
    d->used = (volatile struct vring_used *)((u8 *)d->ring_memory + used_offset);
    d->avail->flags = 1; /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
    d->avail_idx = 0;
    d->used_idx = 0;
    outl(io + REG_QUEUE_PFN, (u32)((u64)d->ring_memory >> 12));
    outb(io + REG_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_DRIVER_OK);
    u32 low = inl(io + REG_CONFIG), high = inl(io + REG_CONFIG + 4);
    d->capacity = (u64)high << 32 | low;
    return 0;
}

/* Makes the chain at `head` available without notifying. */
static void post(struct vblk *d, u16 head) {
    d->avail->ring[d->avail_idx % d->qsize] = head;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    d->avail_idx++;
    __atomic_store_n(&d->avail->idx, d->avail_idx, __ATOMIC_RELEASE);
}

/* Waits until the device has used `count` more chains; returns the last used length or -1. */
static long wait_used(struct vblk *d, int count) {
    u16 target = (u16)(d->used_idx + count);
    for (u64 spins = 0; __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE) != target; spins++) {
        if (vblk_poll_limit && spins > vblk_poll_limit) return -1;
        cpu_relax();
    }
    long length = d->used->ring[(u16)(target - 1) % d->qsize].len;
    d->used_idx = target;
    return length;
}

long vblk_submit_chain(struct vblk *d, u16 head) {
    post(d, head);
    outw(d->io + REG_QUEUE_NOTIFY, 0);
    return wait_used(d, 1);
}

/* Writes header/data/status descriptors for request slot `slot`; returns the head index. */
static u16 build(struct vblk *d, int slot, u32 type, u64 sector, void *buffer, u32 length) {
    u16 head = (u16)(slot * SLOT_DESCRIPTORS);
    struct blk_header *h = &d->headers[slot];
    h->type = type;
    h->ioprio = 0;
    h->sector = sector;
    d->statuses[slot] = 0xff;
    struct vring_desc *desc = d->desc;
    u16 i = head;
    desc[i] = (struct vring_desc){(u64)h, sizeof *h, VRING_DESC_F_NEXT, (u16)(i + 1)};
    i++;
    if (length) {
        u16 flags = VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE);
        desc[i] = (struct vring_desc){(u64)buffer, length, flags, (u16)(i + 1)};
        i++;
    }
    desc[i] = (struct vring_desc){(u64)&d->statuses[slot], 1, VRING_DESC_F_WRITE, 0};
    return head;
}

int vblk_request(struct vblk *d, u32 type, u64 sector, void *buffer, u32 length) {
    u16 head = build(d, 0, type, sector, buffer, length);
    if (vblk_submit_chain(d, head) < 0) return -1;
    return d->statuses[0];
}

int vblk_request_batch(struct vblk *d, u32 type, u64 first_sector, u8 *buffer, u32 length, int count) {
    int slots = d->qsize / SLOT_DESCRIPTORS;
    if (count > slots) count = slots;
    for (int k = 0; k < count; k++)
        post(d, build(d, k, type, first_sector + (u64)k * (length / 512), buffer + (u64)k * length, length));
    outw(d->io + REG_QUEUE_NOTIFY, 0);
    if (wait_used(d, count) < 0) return -1;
    for (int k = 0; k < count; k++)
        if (d->statuses[k] != 0) return d->statuses[k];
    return 0;
}

int vblk_request_many(struct vblk *d, u32 type, const u64 *sectors, u8 *buffer, u32 length, int count) {
    int slots = d->qsize / SLOT_DESCRIPTORS;
    if (count > slots) count = slots;
    for (int k = 0; k < count; k++) post(d, build(d, k, type, sectors[k], buffer + (u64)k * length, length));
    outw(d->io + REG_QUEUE_NOTIFY, 0);
    if (wait_used(d, count) < 0) return -1;
    for (int k = 0; k < count; k++)
        if (d->statuses[k] != 0) return d->statuses[k];
    return 0;
}
