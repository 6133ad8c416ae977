/* Test guest entry and workloads. Every vCPU enters guest_main; the bootstrap vCPU (index 0)
 * drives the devices and returns the result the VMM reports as the power-off status. */
#include "guest.h"

static volatile u32 vcpus_done;

/* The value of the 64-bit word at byte `offset` of a disk filled with `seed`'s pattern. */
static u64 disk_word(u64 seed, u64 offset) { return mix64(seed ^ offset); }

/* A word of vCPU `vcpu`'s memory pattern at guest-physical `address`. */
static u64 memory_word(u64 seed, u32 vcpu, u64 address) { return mix64(seed ^ ((u64)vcpu << 56) ^ address); }

#define PATTERN_BLOCK 8192u

/* Offset of pattern block i of n, spread evenly over the disk (4 KiB aligned, last at the end). */
static u64 pattern_offset(u64 disk_bytes, u64 i, u64 n) {
    if (n <= 1) return 0;
    u64 span = disk_bytes - PATTERN_BLOCK;
    return (span / (n - 1) * i) & ~4095ull;
}

static int open_disk(struct vblk *d, int verbose) {
    u16 io = pci_find_virtio_blk(0, verbose);
    if (!io) {
        gprintf("error: no virtio-blk device\n");
        return R_NO_DEVICE;
    }
    if (vblk_init(d, io) != 0) {
        gprintf("error: virtio-blk setup failed\n");
        return R_DEVICE_SETUP;
    }
    gprintf("virtio-blk at io 0x%x: %lu sectors, features 0x%x, queue %u\n", io, d->capacity, d->features, d->qsize);
    return 0;
}

static int disk_pattern(const struct params *p, int write) {
    static struct vblk disk;
    int r = open_disk(&disk, 1);
    if (r) return r;
    u64 seed = p->args[0], blocks = p->args[1] ? p->args[1] : 16;
    u64 bytes = disk.capacity * 512;
    if (bytes < PATTERN_BLOCK * 2) return R_BAD_PARAMETERS;
    char id[21];
    memset(id, 0, sizeof id);
    if (vblk_request(&disk, VIRTIO_BLK_T_GET_ID, 0, id, 20) != 0) return R_IO_ERROR;
    gprintf("disk id: %s\n", id);
    u64 *buffer = heap_alloc(PATTERN_BLOCK, 4096);
    if (!buffer) return R_BAD_PARAMETERS;
    u64 max_offset = 0;
    for (u64 i = 0; i < blocks; i++) {
        u64 offset = pattern_offset(bytes, i, blocks);
        if (offset > max_offset) max_offset = offset;
        if (write) {
            for (u64 w = 0; w < PATTERN_BLOCK / 8; w++) buffer[w] = disk_word(seed, offset + w * 8);
            /* Two data descriptors (4 KiB each) for the write: exercises multi-segment requests. */
            struct vring_desc *desc = disk.desc;
            disk.headers[0] = (struct blk_header){VIRTIO_BLK_T_OUT, 0, offset / 512};
            disk.statuses[0] = 0xff;
            desc[0] = (struct vring_desc){(u64)&disk.headers[0], 16, VRING_DESC_F_NEXT, 1};
            desc[1] = (struct vring_desc){(u64)buffer, 4096, VRING_DESC_F_NEXT, 2};
            desc[2] = (struct vring_desc){(u64)buffer + 4096, 4096, VRING_DESC_F_NEXT, 3};
            desc[3] = (struct vring_desc){(u64)&disk.statuses[0], 1, VRING_DESC_F_WRITE, 0};
            long used = vblk_submit_chain(&disk, 0);
            if (used != 1 || disk.statuses[0] != 0) {
                gprintf("error: write at offset %lu: status %u used %d\n", offset, disk.statuses[0], (int)used);
                return R_IO_ERROR;
            }
        } else {
            memset(buffer, 0xee, PATTERN_BLOCK);
            int status = vblk_request(&disk, VIRTIO_BLK_T_IN, offset / 512, buffer, PATTERN_BLOCK);
            if (status != 0) {
                gprintf("error: read at offset %lu: status %d\n", offset, status);
                return R_IO_ERROR;
            }
            for (u64 w = 0; w < PATTERN_BLOCK / 8; w++) {
                if (buffer[w] != disk_word(seed, offset + w * 8)) {
                    gprintf("error: mismatch at disk offset %lu\n", offset + w * 8);
                    return R_VERIFY_MISMATCH;
                }
            }
            /* The block just after a pattern block was never written: it must read as zeros. */
            u64 gap = offset + PATTERN_BLOCK;
            if (i + 1 < blocks && gap + 4096 <= pattern_offset(bytes, i + 1, blocks)) {
                if (vblk_request(&disk, VIRTIO_BLK_T_IN, gap / 512, buffer, 4096) != 0) return R_IO_ERROR;
                for (int w = 0; w < 512; w++)
                    if (buffer[w] != 0) {
                        gprintf("error: unwritten disk offset %lu is not zero\n", gap + w * 8);
                        return R_VERIFY_MISMATCH;
                    }
            }
        }
    }
    if (write) {
        if (vblk_request(&disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0) return R_IO_ERROR;
        gprintf("pattern written: %lu blocks of %u bytes, highest offset %lu, flushed\n", blocks, PATTERN_BLOCK, max_offset);
    } else {
        gprintf("pattern verified: %lu blocks, highest offset %lu\n", blocks, max_offset);
    }
    return R_SUCCESS;
}

static int throughput(const struct params *p) {
    static struct vblk disk;
    int r = open_disk(&disk, 0);
    if (r) return r;
    u64 total = p->args[0], request = p->args[1] ? p->args[1] : (1u << 20);
    int depth = p->args[2] ? (int)p->args[2] : 8;
    if (request % 512 || request > (1u << 24) || total % (request * depth) || total > disk.capacity * 512)
        return R_BAD_PARAMETERS;
    u8 *buffer = heap_alloc(request * depth, 4096);
    if (!buffer) return R_BAD_PARAMETERS;
    for (u64 i = 0; i < request * depth; i += 8) *(u64 *)(buffer + i) = mix64(i);
    marker(0x10);
    for (u64 offset = 0; offset < total; offset += request * depth)
        if (vblk_request_batch(&disk, VIRTIO_BLK_T_OUT, offset / 512, buffer, (u32)request, depth) != 0) return R_IO_ERROR;
    if (vblk_request(&disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0) return R_IO_ERROR;
    marker(0x11);
    marker(0x12);
    for (u64 offset = 0; offset < total; offset += request * depth)
        if (vblk_request_batch(&disk, VIRTIO_BLK_T_IN, offset / 512, buffer, (u32)request, depth) != 0) return R_IO_ERROR;
    marker(0x13);
    gprintf("throughput: %lu bytes written and read in %lu-byte requests, %d per notify\n", total, request, depth);
    return R_SUCCESS;
}

/* True when [base, base + size) is guest RAM: below the 3 GiB hole, or in the part above 4 GiB. */
static int ram_contains(const struct params *p, u64 base, u64 size) {
    const u64 hole = 3ull << 30, high = 4ull << 30;
    u64 low_end = p->memory_size < hole ? p->memory_size : hole;
    u64 high_end = p->memory_size > hole ? high + (p->memory_size - hole) : high;
    if (base + size < base) return 0;
    if (base >= p->heap_start && base + size <= low_end) return 1;
    return base >= high && base + size <= high_end;
}

/* Each vCPU fills its own slice with its pattern, re-reads it, and reports a checksum.
 * args[0] = slice bytes per vCPU; args[2] = first slice's address (0: in the heap). */
static int memory_slice(const struct params *p, u32 vcpu, u64 seed, int verbose_checksum) {
    u64 slice = p->args[0] ? p->args[0] : (1u << 20);
    u64 base = (p->args[2] ? p->args[2] : p->heap_start + (16ull << 20)) + slice * vcpu;
    if (slice % 8 || !ram_contains(p, base, slice) || (!p->args[2] && base + slice > p->heap_end)) {
        gprintf("vcpu %u: slice of %lu bytes does not fit\n", vcpu, slice);
        return R_BAD_PARAMETERS;
    }
    u64 *words = (u64 *)base;
    for (u64 i = 0; i < slice / 8; i++) words[i] = memory_word(seed, vcpu, base + i * 8);
    u64 checksum = 0;
    for (u64 i = 0; i < slice / 8; i++) {
        if (words[i] != memory_word(seed, vcpu, base + i * 8)) {
            gprintf("vcpu %u: memory mismatch at 0x%lx\n", vcpu, base + i * 8);
            return R_VERIFY_MISMATCH;
        }
        checksum ^= mix64(words[i] + i);
    }
    if (verbose_checksum)
        gprintf("vcpu %u: filled %lu KiB at 0x%lx checksum %016lx\n", vcpu, slice >> 10, base, checksum);
    else
        gprintf("vcpu %u: filled and verified %lu KiB at 0x%lx\n", vcpu, slice >> 10, base);
    return R_SUCCESS;
}

static volatile u32 failures;

int guest_main(u64 vcpu, struct params *p, u64 count) {
    if (p->magic != PARAM_MAGIC || p->vcpu_count != count) return R_BAD_PARAMETERS;
    int result = R_SUCCESS;
    switch (p->workload) {
    case WL_HELLO:
        if (vcpu != 0) park();
        gprintf("hello from the test guest: %u vcpus, %lu MiB\n", p->vcpu_count, p->memory_size >> 20);
        return R_SUCCESS;
    case WL_VCPU_REPORT:
    case WL_MEMORY_FILL:
        result = memory_slice(p, (u32)vcpu, p->workload == WL_VCPU_REPORT ? 0x5eed : p->args[1],
                              p->workload == WL_VCPU_REPORT);
        if (result) __atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&vcpus_done, 1, __ATOMIC_SEQ_CST);
        if (vcpu != 0) park();
        while (__atomic_load_n(&vcpus_done, __ATOMIC_SEQ_CST) != count) cpu_relax();
        if (failures) return R_VERIFY_MISMATCH;
        gprintf("all %u vcpus reported\n", (u32)count);
        return R_SUCCESS;
    case WL_HOSTILE_LIMITS:
        if (vcpu == 1) hostile_helper(); /* the second driver thread; never returns */
        break;
    case WL_MEMORY_GENERATIONS:
        memory_generations(p, (u32)vcpu, (u32)count);
    case WL_IDLE:
        /* Never powers off and uses no CPU: every vCPU parks in the VMM (an idle VM for the host's figures). */
        if (vcpu == 0) gprintf("idle on %u vcpus\n", (u32)count);
        park();
    case WL_SPIN:
        /* Never powers off: the host must stop the VM while every vCPU runs guest code. */
        if (vcpu == 0) gprintf("spinning on %u vcpus\n", (u32)count);
        for (volatile u64 n = 0;; n++) cpu_relax();
    default:
        break;
    }
    if (vcpu != 0) park();
    heap_init(p->heap_start, p->heap_end);
    switch (p->workload) {
    case WL_DISK_WRITE_PATTERN: return disk_pattern(p, 1);
    case WL_DISK_VERIFY_PATTERN: return disk_pattern(p, 0);
    case WL_DISK_THROUGHPUT: return throughput(p);
    case WL_HEARTBEAT:
        heartbeat(p);
    case WL_DISK_RANDOM: {
        static struct vblk disk;
        int r = open_disk(&disk, 0);
        return r ? r : disk_random(p, &disk);
    }
    case WL_DISK_SEQUENCE: {
        static struct vblk disk;
        int r = open_disk(&disk, 0);
        return r ? r : disk_sequence(p, &disk);
    }
    case WL_HOSTILE: {
        static struct vblk disk;
        int r = open_disk(&disk, 0);
        return r ? r : hostile_tests(&disk);
    }
    case WL_HOSTILE_LIMITS: {
        static struct vblk disk;
        int r = open_disk(&disk, 0);
        return r ? r : hostile_limits(&disk, p);
    }
    case WL_NET_RESPONDER: return net_responder(p);
    case WL_UDP_SEND: return udp_send(p);
    default:
        gprintf("error: unknown workload %u\n", p->workload);
        return R_BAD_PARAMETERS;
    }
}
