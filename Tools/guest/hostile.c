/* Hostile-driver checks: malformed descriptor chains must get an error status (or be returned
 * with nothing written), never crash the VMM, and the device must keep working afterwards. */
#include "guest.h"

enum expect { EXPECT_OK, EXPECT_IOERR, EXPECT_UNSUPP, EXPECT_DROPPED };

static const char *const expect_names[] = {"OK", "IOERR", "UNSUPP", "dropped"};

struct chain_case {
    const char *name;
    u32 type;
    u64 sector;
    u64 header_addr; /* 0: the real header */
    u16 header_flags;
    u64 data_addr;   /* 0: the real buffer; 1: no data descriptor */
    u32 data_len;
    u16 data_flags;
    u64 status_addr; /* 0: the real status byte */
    u16 status_flags;
    enum expect expect;
};

static int run_case(struct vblk *d, const struct chain_case *c, u8 *buffer, volatile u8 *status) {
    struct blk_header *h = &d->headers[0];
    h->type = c->type;
    h->ioprio = 0;
    h->sector = c->sector;
    *status = 0xff; /* sentinel: the device must write 0/1/2 here, or nothing for dropped chains */
    struct vring_desc *desc = d->desc;
    u16 i = 0;
    desc[i] = (struct vring_desc){c->header_addr ? c->header_addr : (u64)h, 16, (u16)(c->header_flags | VRING_DESC_F_NEXT), 1};
    i++;
    if (c->data_addr != 1) {
        desc[i] = (struct vring_desc){c->data_addr ? c->data_addr : (u64)buffer, c->data_len,
                                      (u16)(c->data_flags | VRING_DESC_F_NEXT), (u16)(i + 1)};
        i++;
    }
    desc[i] = (struct vring_desc){c->status_addr ? c->status_addr : (u64)status, 1, c->status_flags, 0};
    long used = vblk_submit_chain(d, 0);
    u8 got = *status;
    int ok;
    switch (c->expect) {
    case EXPECT_OK: ok = used >= 1 && got == 0; break;
    case EXPECT_IOERR: ok = used >= 1 && got == 1; break;
    case EXPECT_UNSUPP: ok = used >= 1 && got == 2; break;
    default: ok = used == 0 && got == 0xff; break;
    }
    gprintf("hostile: %s: expected %s, used len %d status %u: %s\n", c->name, expect_names[c->expect], (int)used, got,
            ok ? "ok" : "FAILED");
    return ok;
}

/* A chain built by hand at descriptors 8.. with the given shape; returns 1 when the device
 * returned it without writing the status. */
static int run_raw(struct vblk *d, const char *name, struct vring_desc *chain, int n, volatile u8 *status) {
    *status = 0xff;
    for (int k = 0; k < n; k++) d->desc[8 + k] = chain[k];
    long used = vblk_submit_chain(d, 8);
    int ok = used == 0 && *status == 0xff;
    gprintf("hostile: %s: expected dropped, used len %d status %u: %s\n", name, (int)used, *status, ok ? "ok" : "FAILED");
    return ok;
}

int hostile_tests(struct vblk *d) {
    u8 *buffer = heap_alloc(8192, 4096);
    volatile u8 *status = heap_alloc(64, 64);
    if (!buffer || !status) return R_BAD_PARAMETERS;
    u64 beyond = 0x7ff000000000ull; /* far outside guest RAM */
    u64 capacity = d->capacity;
    const u16 W = VRING_DESC_F_WRITE;
    const struct chain_case cases[] = {
        {"valid read", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 512, W, 0, W, EXPECT_OK},
        {"header outside guest memory", VIRTIO_BLK_T_IN, 0, beyond, 0, 0, 512, W, 0, W, EXPECT_IOERR},
        {"data outside guest memory", VIRTIO_BLK_T_IN, 0, 0, 0, beyond, 512, W, 0, W, EXPECT_IOERR},
        {"data address wraps around", VIRTIO_BLK_T_OUT, 0, 0, 0, 0xfffffffffffff000ull, 8192, 0, 0, W, EXPECT_IOERR},
        {"oversized data length", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 0xfffffe00u, W, 0, W, EXPECT_IOERR},
        {"read into device-readable buffer", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 512, 0, 0, W, EXPECT_IOERR},
        {"write from device-writable buffer", VIRTIO_BLK_T_OUT, 0, 0, 0, 0, 512, W, 0, W, EXPECT_IOERR},
        {"device-writable header", VIRTIO_BLK_T_IN, 0, 0, W, 0, 512, W, 0, W, EXPECT_IOERR},
        {"status not writable", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 512, W, 0, 0, EXPECT_DROPPED},
        {"status outside guest memory", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 512, W, beyond, W, EXPECT_DROPPED},
        {"sector past the end", VIRTIO_BLK_T_IN, capacity, 0, 0, 0, 512, W, 0, W, EXPECT_IOERR},
        {"request straddles the end", VIRTIO_BLK_T_IN, capacity - 1, 0, 0, 0, 1024, W, 0, W, EXPECT_IOERR},
        {"sector overflows 64 bits", VIRTIO_BLK_T_OUT, 0x8000000000000000ull, 0, 0, 0, 512, 0, 0, W, EXPECT_IOERR},
        {"length not a sector multiple", VIRTIO_BLK_T_IN, 0, 0, 0, 0, 100, W, 0, W, EXPECT_IOERR},
        {"unknown request type", 0x77, 0, 0, 0, 0, 512, W, 0, W, EXPECT_UNSUPP},
        {"no data descriptor for a read", VIRTIO_BLK_T_IN, 0, 0, 0, 1, 0, 0, 0, W, EXPECT_OK},
    };
    int passed = 0, total = 0;
    for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++, total++) passed += run_case(d, &cases[k], buffer, status);

    /* Chains the device cannot even walk. */
    struct blk_header *h = &d->headers[1];
    *h = (struct blk_header){VIRTIO_BLK_T_IN, 0, 0};
    struct vring_desc loop[2] = {
        {(u64)h, 16, VRING_DESC_F_NEXT, 9},
        {(u64)buffer, 512, VRING_DESC_F_NEXT | W, 8}, /* back to the head: a loop */
    };
    passed += run_raw(d, "descriptor loop", loop, 2, status), total++;
    struct vring_desc bad_next[2] = {
        {(u64)h, 16, VRING_DESC_F_NEXT, 9},
        {(u64)buffer, 512, VRING_DESC_F_NEXT | W, 0xfff0}, /* next outside the table */
    };
    passed += run_raw(d, "next index outside the table", bad_next, 2, status), total++;
    struct vring_desc indirect[2] = {
        {(u64)h, 16, VRING_DESC_F_NEXT, 9},
        {(u64)buffer, 512, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 10},
    };
    passed += run_raw(d, "indirect descriptor not negotiated", indirect, 2, status), total++;

    /* The device still serves a valid request after all that. */
    passed += run_case(d, &cases[0], buffer, status), total++;

    /* avail.idx jumping more than the queue size ahead: the device must flag NEEDS_RESET. */
    d->avail->ring[d->avail_idx % d->qsize] = 0;
    __atomic_store_n(&d->avail->idx, (u16)(d->avail_idx + d->qsize + 5), __ATOMIC_RELEASE);
    outw(d->io + 16, 0);
    u8 device_status = vblk_device_status(d);
    int needs_reset = (device_status & 0x40) != 0;
    gprintf("hostile: avail index jump: device status 0x%x: %s\n", device_status, needs_reset ? "ok" : "FAILED");
    passed += needs_reset, total++;

    /* After a reset and re-initialisation the device works again. */
    int reinit = vblk_init(d, d->io) == 0 && !(vblk_device_status(d) & 0x40);
    int works = reinit && vblk_request(d, VIRTIO_BLK_T_IN, 0, buffer, 512) == 0;
    gprintf("hostile: reset after NEEDS_RESET: %s\n", works ? "ok" : "FAILED");
    passed += works, total++;

    gprintf("hostile: %d of %d cases passed\n", passed, total);
    return passed == total ? R_SUCCESS : R_HOSTILE_FAILED;
}
