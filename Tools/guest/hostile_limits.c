/* Limits of the virtio-blk device and the VMM, tried by a hostile driver: headers and buffers at
 * the edges of RAM and in the 3-4 GiB hole, zero-length status, more than 64 MiB of data, mixed
 * directions, DISCARD/WRITE_ZEROES ranges, queue registers out of range, rings that do not fit,
 * and a second vCPU racing the ring. Each request must get the right status or be returned with
 * nothing written; the device must keep working; the disk outside the requests stays intact.
 * Needs at least 3 GiB + 128 MiB of RAM (RAM above 4 GiB), 2 vCPUs and a disk of 256 MiB or more. */
#include "guest.h"

#define HOLE_START 0xC0000000ull
#define HIGH_START 0x100000000ull
#define NEEDS_RESET 0x40
#define FEATURES (VBLK_DEFAULT_FEATURES | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES)
#define STATUS_UNTOUCHED 0xff
#define DROPPED 0xfe /* expected "status": the chain comes back with length 0 and no status */

/* Disk regions: a pattern that no request may change, one that WRITE_ZEROES must zero. */
#define PATTERN_SECTOR 0
#define PATTERN_SECTORS 128
#define ZERO_SECTOR 1024
#define ZERO_SECTORS 16
#define DISCARD_SECTOR 2048

static int passed, total;

static void report(const char *name, int expected, long used, int status, int ok) {
    static const char *const names[] = {"OK", "IOERR", "UNSUPP"};
    gprintf("limits: %s: expected %s, used len %d status %u: %s\n", name,
            expected == DROPPED ? "dropped" : names[expected], (int)used, status, ok ? "ok" : "FAILED");
    passed += ok;
    total++;
}

static void check(const char *name, int ok) {
    gprintf("limits: %s: %s\n", name, ok ? "ok" : "FAILED");
    passed += ok;
    total++;
}

/* Writes the chain `descs` (flags without NEXT) at descriptor `head`, submits it and checks the
 * outcome: the status byte at `status` for a status code, or length 0 and no status for DROPPED. */
static void expect_chain(struct vblk *d, const char *name, u16 head, const struct vring_desc *descs, int n,
                         volatile u8 *status, int expected) {
    for (int k = 0; k < n; k++) {
        d->desc[head + k] = descs[k];
        if (k + 1 < n) {
            d->desc[head + k].flags |= VRING_DESC_F_NEXT;
            d->desc[head + k].next = (u16)(head + k + 1);
        }
    }
    if (status) *status = STATUS_UNTOUCHED;
    long used = vblk_submit_chain(d, head);
    int got = status ? *status : STATUS_UNTOUCHED;
    int ok = expected == DROPPED ? used == 0 && got == STATUS_UNTOUCHED : used >= 1 && got == expected;
    report(name, expected, used, got, ok);
}

/* A request of header + one data buffer + status, at descriptor 0. */
static void expect_simple(struct vblk *d, const char *name, u32 type, u64 sector, u64 header_addr, u32 header_len,
                          u64 data_addr, u32 data_len, u16 data_flags, u64 status_addr, u32 status_len, int expected) {
    struct blk_header *h = &d->headers[0];
    if (!header_addr) {
        header_addr = (u64)h;
        *h = (struct blk_header){type, 0, sector};
    }
    volatile u8 *status = status_addr ? 0 : &d->statuses[0];
    struct vring_desc chain[3] = {
        {header_addr, header_len, 0, 0},
        {data_addr, data_len, data_flags, 0},
        {status_addr ? status_addr : (u64)status, status_len, VRING_DESC_F_WRITE, 0},
    };
    expect_chain(d, name, 0, chain, 3, status, expected);
}

/* DISCARD/WRITE_ZEROES with `count` ranges {sector, sectors, flags} in one buffer. */
static void expect_ranges(struct vblk *d, const char *name, u32 type, u64 *ranges, int count, u32 length,
                          int expected) {
    struct blk_header *h = &d->headers[0];
    *h = (struct blk_header){type, 0, 0};
    volatile u8 *status = &d->statuses[0];
    struct vring_desc chain[3] = {
        {(u64)h, 16, 0, 0},
        {(u64)ranges, length ? length : 16u * (u32)count, 0, 0},
        {(u64)status, 1, VRING_DESC_F_WRITE, 0},
    };
    expect_chain(d, name, 0, chain, 3, status, expected);
}

static void set_range(u64 *range, u64 sector, u32 sectors, u32 flags) {
    range[0] = sector;
    range[1] = (u64)flags << 32 | sectors;
}

static int reinit(struct vblk *d, u32 features) {
    return vblk_init_with(d, d->io, features) == 0 && !(vblk_device_status(d) & NEEDS_RESET);
}

static u64 pattern_word(u64 offset) { return mix64(0xa11ce ^ offset); }

/* ---- the second vCPU ------------------------------------------------------------------------ */

enum helper_task { TASK_NONE, TASK_BUSY_RING, TASK_GARBAGE };

static struct {
    struct vblk *d;
    volatile u32 task;
    volatile u32 generation; /* bumped by vCPU 0 to start a task */
    volatile u32 finished;   /* set to the generation by vCPU 1 when the task is done */
    volatile u32 stop;
    volatile u32 added;
    volatile u16 avail;      /* the avail index vCPU 1 has published */
    u16 head;                /* the chain vCPU 1 makes available */
} helper;

static void busy_ring(void) {
    struct vblk *d = helper.d;
    u16 avail = helper.avail;
    while (!__atomic_load_n(&helper.stop, __ATOMIC_ACQUIRE)) {
        u16 used = __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE);
        if ((u16)(avail - used) >= d->qsize - 1) {
            cpu_relax();
            continue;
        }
        d->avail->ring[avail % d->qsize] = helper.head;
        avail++;
        __atomic_store_n(&d->avail->idx, avail, __ATOMIC_RELEASE);
        __atomic_fetch_add(&helper.added, 1, __ATOMIC_RELEASE);
    }
    helper.avail = avail;
}

static void garbage(void) {
    struct vblk *d = helper.d;
    for (u64 i = 0; !__atomic_load_n(&helper.stop, __ATOMIC_ACQUIRE); i++) {
        u64 r = mix64(0x6a7ba6e ^ i);
        switch (r & 3) {
        case 0: d->avail->ring[(r >> 8) % d->qsize] = (u16)(r >> 24); break; /* any head, most out of range */
        case 1: __atomic_store_n(&d->avail->idx, (u16)(r >> 40), __ATOMIC_RELEASE); break; /* jumps */
        default: __atomic_fetch_add(&d->avail->idx, 1, __ATOMIC_RELEASE); break;
        }
    }
}

void hostile_helper(void) {
    u32 seen = 0;
    for (;;) {
        u32 generation = __atomic_load_n(&helper.generation, __ATOMIC_ACQUIRE);
        if (generation == seen) {
            cpu_relax();
            continue;
        }
        seen = generation;
        if (helper.task == TASK_BUSY_RING) busy_ring();
        if (helper.task == TASK_GARBAGE) garbage();
        __atomic_store_n(&helper.finished, generation, __ATOMIC_RELEASE);
    }
}

static void start_helper(u32 task) {
    helper.stop = 0;
    helper.added = 0;
    helper.task = task;
    __atomic_fetch_add(&helper.generation, 1, __ATOMIC_RELEASE);
}

static void stop_helper(void) {
    __atomic_store_n(&helper.stop, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&helper.finished, __ATOMIC_ACQUIRE) != helper.generation) cpu_relax();
}

/* ---- the checks ----------------------------------------------------------------------------- */

static void requests_at_the_edges(struct vblk *d, u64 ram_end, u8 *buffer, u64 high_buffer) {
    const u16 W = VRING_DESC_F_WRITE;
    u64 b = (u64)buffer;
    /* Headers. */
    expect_simple(d, "header of 8 bytes", VIRTIO_BLK_T_IN, 0, 0, 8, b, 512, W, 0, 1, 1);
    struct blk_header *edge = (struct blk_header *)(ram_end - 8);
    *(volatile u32 *)edge = VIRTIO_BLK_T_IN; /* the first 8 bytes are RAM, the rest is not */
    expect_simple(d, "header straddles the end of RAM", 0, 0, ram_end - 8, 16, b, 512, W, 0, 1, 1);
    *(volatile u32 *)(HOLE_START - 8) = VIRTIO_BLK_T_IN;
    expect_simple(d, "header straddles into the 3-4 GiB hole", 0, 0, HOLE_START - 8, 16, b, 512, W, 0, 1, 1);
    expect_simple(d, "header in the 3-4 GiB hole", 0, 0, HOLE_START + 0x1000, 16, b, 512, W, 0, 1, 1);
    /* Status. */
    expect_simple(d, "zero-length status", VIRTIO_BLK_T_IN, 0, 0, 16, b, 512, W, 0, 0, DROPPED);
    expect_simple(d, "status in the 3-4 GiB hole", VIRTIO_BLK_T_IN, 0, 0, 16, b, 512, W, HOLE_START + 0x2000, 1, DROPPED);
    expect_simple(d, "status past the end of RAM", VIRTIO_BLK_T_IN, 0, 0, 16, b, 512, W, ram_end, 1, DROPPED);
    /* Data. */
    expect_simple(d, "data in the 3-4 GiB hole", VIRTIO_BLK_T_IN, 0, 0, 16, 0xD0000000ull, 512, W, 0, 1, 1);
    expect_simple(d, "data straddles into the hole", VIRTIO_BLK_T_IN, 0, 0, 16, HOLE_START - 256, 512, W, 0, 1, 1);
    expect_simple(d, "data straddles the end of RAM", VIRTIO_BLK_T_IN, 0, 0, 16, ram_end - 256, 512, W, 0, 1, 1);
    expect_simple(d, "data above 4 GiB", VIRTIO_BLK_T_IN, PATTERN_SECTOR, 0, 16, high_buffer, 512, W, 0, 1, 0);
    check("data above 4 GiB holds the disk's bytes", *(u64 *)high_buffer == pattern_word(0));
    /* Mixed directions. */
    struct blk_header *h = &d->headers[0];
    volatile u8 *status = &d->statuses[0];
    *h = (struct blk_header){VIRTIO_BLK_T_OUT, 0, PATTERN_SECTOR};
    struct vring_desc write_mixed[4] = {{(u64)h, 16, 0, 0}, {b, 512, 0, 0}, {b + 512, 512, W, 0}, {(u64)status, 1, W, 0}};
    expect_chain(d, "write with a device-writable data buffer", 0, write_mixed, 4, status, 1);
    *h = (struct blk_header){VIRTIO_BLK_T_IN, 0, PATTERN_SECTOR};
    struct vring_desc read_mixed[4] = {{(u64)h, 16, 0, 0}, {b, 512, W, 0}, {b + 512, 512, 0, 0}, {(u64)status, 1, W, 0}};
    expect_chain(d, "read with a device-readable data buffer", 0, read_mixed, 4, status, 1);
}

/* More than 64 MiB of data in one request, from 512 KiB buffers above 4 GiB; exactly 64 MiB is served. */
static void transfer_cap(struct vblk *d, u64 high_buffer) {
    static struct vring_desc chain[132];
    struct blk_header *h = &d->headers[0];
    volatile u8 *status = &d->statuses[0];
    for (int pieces = 129; pieces >= 128; pieces--) {
        *h = (struct blk_header){VIRTIO_BLK_T_OUT, 0, pieces == 129 ? PATTERN_SECTOR : 65536};
        chain[0] = (struct vring_desc){(u64)h, 16, 0, 0};
        for (int k = 1; k <= pieces; k++) chain[k] = (struct vring_desc){high_buffer, 512 << 10, 0, 0};
        chain[pieces + 1] = (struct vring_desc){(u64)status, 1, VRING_DESC_F_WRITE, 0};
        expect_chain(d, pieces == 129 ? "64.5 MiB of data descriptors" : "exactly 64 MiB of data descriptors", 16, chain,
                     pieces + 2, status, pieces == 129 ? 1 : 0);
    }
}

static void discard_and_write_zeroes(struct vblk *d, u64 *ranges) {
    u32 max_zero_sectors = inl(d->io + REG_CONFIG + 48);
    set_range(ranges, ZERO_SECTOR, 8, 0);
    set_range(ranges + 2, ZERO_SECTOR + 8, 8, 0);
    expect_ranges(d, "write zeroes with two ranges (one is advertised)", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 2, 0, 2);
    expect_ranges(d, "discard with two ranges", VIRTIO_BLK_T_DISCARD, ranges, 2, 0, 2);
    expect_ranges(d, "a range of 15 bytes", VIRTIO_BLK_T_DISCARD, ranges, 1, 15, 1);
    set_range(ranges, d->capacity - 4, 8, 0);
    expect_ranges(d, "discard past the end", VIRTIO_BLK_T_DISCARD, ranges, 1, 0, 1);
    set_range(ranges, 0xffffffffffffff00ull, 8, 0);
    expect_ranges(d, "write zeroes at a sector that overflows", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 1);
    set_range(ranges, 0, max_zero_sectors + 1, 0);
    expect_ranges(d, "write zeroes longer than advertised", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 1);
    set_range(ranges, DISCARD_SECTOR, 8, 1);
    expect_ranges(d, "discard with the unmap flag", VIRTIO_BLK_T_DISCARD, ranges, 1, 0, 2);
    set_range(ranges, ZERO_SECTOR, 8, 6);
    expect_ranges(d, "write zeroes with unknown flags", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 2);
    set_range(ranges, ZERO_SECTOR, 8, 0);
    expect_ranges(d, "write zeroes", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 0);
    set_range(ranges, ZERO_SECTOR + 8, 8, 1);
    expect_ranges(d, "write zeroes that may unmap", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 0);
    set_range(ranges, DISCARD_SECTOR, 8, 0);
    expect_ranges(d, "discard", VIRTIO_BLK_T_DISCARD, ranges, 1, 0, 0);
    /* Without the features negotiated, both are unsupported. */
    check("re-initialised without DISCARD and WRITE_ZEROES", reinit(d, VBLK_DEFAULT_FEATURES));
    expect_ranges(d, "discard not negotiated", VIRTIO_BLK_T_DISCARD, ranges, 1, 0, 2);
    expect_ranges(d, "write zeroes not negotiated", VIRTIO_BLK_T_WRITE_ZEROES, ranges, 1, 0, 2);
    check("re-initialised with DISCARD and WRITE_ZEROES", reinit(d, FEATURES));
}

static void queue_registers(struct vblk *d, u64 ram_end, u8 *buffer) {
    u32 pfn = inl(d->io + REG_QUEUE_PFN);
    outw(d->io + REG_QUEUE_SEL, 1);
    int none = inw(d->io + REG_QUEUE_NUM) == 0 && inl(d->io + REG_QUEUE_PFN) == 0;
    outl(d->io + REG_QUEUE_PFN, 0x1234); /* a queue that does not exist */
    outw(d->io + REG_QUEUE_SEL, 0xffff);
    none = none && inw(d->io + REG_QUEUE_NUM) == 0;
    outw(d->io + REG_QUEUE_NOTIFY, 1);
    outw(d->io + REG_QUEUE_NOTIFY, 0xffff);
    outw(d->io + REG_QUEUE_SEL, 0);
    int intact = inl(d->io + REG_QUEUE_PFN) == pfn && !(vblk_device_status(d) & NEEDS_RESET);
    check("QUEUE_SEL and QUEUE_NOTIFY out of range are ignored",
          none && intact && vblk_request(d, VIRTIO_BLK_T_IN, 0, buffer, 512) == 0);
    const struct { const char *name; u32 pfn; } rings[] = {
        {"a queue that straddles the end of RAM", (u32)((ram_end - 4096) >> 12)},
        {"a queue in the 3-4 GiB hole", (u32)(HOLE_START >> 12)},
        {"a queue that straddles into the hole", (u32)((HOLE_START - 4096) >> 12)},
        {"a queue past 4 GiB of PFNs", 0xffffffffu},
    };
    for (unsigned k = 0; k < sizeof rings / sizeof rings[0]; k++) {
        outl(d->io + REG_QUEUE_PFN, rings[k].pfn);
        outw(d->io + REG_QUEUE_NOTIFY, 0);
        int flagged = (vblk_device_status(d) & NEEDS_RESET) != 0;
        int recovers = reinit(d, FEATURES) && vblk_request(d, VIRTIO_BLK_T_IN, 0, buffer, 512) == 0;
        check(rings[k].name, flagged && recovers);
    }
}

/* Chain 200: a read of the sector in `h` into scratch + 4096, status at scratch + 64. */
static void set_read_chain(struct vblk *d, struct blk_header *h, u8 *scratch) {
    d->desc[200] = (struct vring_desc){(u64)h, 16, VRING_DESC_F_NEXT, 201};
    d->desc[201] = (struct vring_desc){(u64)scratch + 4096, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 202};
    d->desc[202] = (struct vring_desc){(u64)scratch + 64, 1, VRING_DESC_F_WRITE, 0};
}

static void racing_vcpu(struct vblk *d, u8 *scratch) {
    /* Chain 200: a read of sector 0 into scratch; vCPU 1 makes it available again and again. */
    struct blk_header *h = (struct blk_header *)scratch;
    *h = (struct blk_header){VIRTIO_BLK_T_IN, 0, PATTERN_SECTOR};
    set_read_chain(d, h, scratch);
    helper.d = d;
    helper.head = 200;
    helper.avail = d->avail_idx;
    start_helper(TASK_BUSY_RING);
    while (__atomic_load_n(&helper.added, __ATOMIC_ACQUIRE) == 0) cpu_relax();
    u16 before = __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE);
    outw(d->io + REG_QUEUE_NOTIFY, 0); /* returns only if the device stops taking requests at some point */
    /* The requests it took run on the VMM's I/O threads: count them once they stop completing. */
    u16 served = 0;
    for (u64 quiet = 0, spins = 0; quiet < 2000000 && spins < 400000000; spins++) {
        u16 now = (u16)(__atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE) - before);
        if (now != served || now == 0) quiet = 0; else quiet++;
        served = now;
        cpu_relax();
    }
    stop_helper();
    for (int k = 0; k < 64 && __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE) != helper.avail; k++) {
        outw(d->io + REG_QUEUE_NOTIFY, 0);
        for (u64 spins = 0; spins < 20000000 && __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE) != helper.avail; spins++) cpu_relax();
    }
    d->avail_idx = helper.avail;
    d->used_idx = __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE);
    gprintf("limits: one notify served %u requests while vCPU 1 added %u\n", served, helper.added);
    check("a notify returns while another vCPU keeps the ring full",
          served > 0 && served <= d->qsize && d->used_idx == d->avail_idx && !(vblk_device_status(d) & NEEDS_RESET));
    /* Garbage in the avail ring from vCPU 1 while vCPU 0 notifies: the device may give up on the
     * queue (NEEDS_RESET) but never crashes, and works again after a reset. Only chain 200 is set. */
    check("re-initialised before the garbage", reinit(d, FEATURES));
    set_read_chain(d, h, scratch);
    start_helper(TASK_GARBAGE);
    int resets = 0;
    for (int k = 0; k < 2000; k++) {
        outw(d->io + REG_QUEUE_NOTIFY, 0);
        if (!(vblk_device_status(d) & NEEDS_RESET)) continue;
        resets++;
        vblk_init_with(d, d->io, FEATURES); /* vCPU 1 goes on scribbling over the fresh ring */
        set_read_chain(d, h, scratch);
    }
    stop_helper();
    gprintf("limits: %d resets while vCPU 1 wrote garbage into the ring\n", resets);
    check("the device works after garbage from another vCPU",
          reinit(d, FEATURES) && vblk_request(d, VIRTIO_BLK_T_IN, 0, scratch + 4096, 512) == 0);
}

int hostile_limits(struct vblk *d, const struct params *p) {
    if (p->memory_size < HOLE_START + (128ull << 20) || p->vcpu_count < 2 || d->capacity < (256ull << 20) / 512) {
        gprintf("limits: needs 3 GiB + 128 MiB of RAM, 2 vCPUs and a 256 MiB disk\n");
        return R_BAD_PARAMETERS;
    }
    u64 ram_end = HIGH_START + (p->memory_size - HOLE_START);
    u64 high_buffer = HIGH_START + (16ull << 20); /* 512 KiB, above 4 GiB */
    u8 *buffer = heap_alloc(PATTERN_SECTORS * 512, 4096);
    u8 *scratch = heap_alloc(8192, 4096);
    u64 *ranges = heap_alloc(4096, 64);
    if (!buffer || !scratch || !ranges || !reinit(d, FEATURES)) return R_DEVICE_SETUP;
    /* The pattern that must survive every hostile request, and the region WRITE_ZEROES clears. */
    for (u64 w = 0; w < PATTERN_SECTORS * 512 / 8; w++) ((u64 *)buffer)[w] = pattern_word(w * 8);
    if (vblk_request(d, VIRTIO_BLK_T_OUT, PATTERN_SECTOR, buffer, PATTERN_SECTORS * 512) != 0) return R_IO_ERROR;
    memset(scratch, 0x5a, 8192);
    if (vblk_request(d, VIRTIO_BLK_T_OUT, ZERO_SECTOR, scratch, ZERO_SECTORS * 512) != 0) return R_IO_ERROR;

    requests_at_the_edges(d, ram_end, buffer + 8192, high_buffer);
    transfer_cap(d, high_buffer);
    discard_and_write_zeroes(d, ranges);
    queue_registers(d, ram_end, scratch);
    racing_vcpu(d, scratch);

    /* The disk outside the requests is intact, and the zeroed region reads zeros. */
    memset(buffer, 0xee, PATTERN_SECTORS * 512);
    int intact = vblk_request(d, VIRTIO_BLK_T_IN, PATTERN_SECTOR, buffer, PATTERN_SECTORS * 512) == 0;
    for (u64 w = 0; intact && w < PATTERN_SECTORS * 512 / 8; w++) intact = ((u64 *)buffer)[w] == pattern_word(w * 8);
    check("the pattern outside the requests is intact", intact);
    memset(scratch, 0xee, 8192);
    int zeroed = vblk_request(d, VIRTIO_BLK_T_IN, ZERO_SECTOR, scratch, ZERO_SECTORS * 512) == 0;
    for (int k = 0; zeroed && k < ZERO_SECTORS * 512; k++) zeroed = scratch[k] == 0;
    check("WRITE_ZEROES left zeros", zeroed);
    if (vblk_request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0) return R_IO_ERROR;
    gprintf("limits: %d of %d cases passed\n", passed, total);
    return passed == total ? R_SUCCESS : R_HOSTILE_FAILED;
}
