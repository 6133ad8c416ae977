/* WL_DISK_SEQUENCE: writes numbered records to disk 0 until told to stop, for the tests that
 * must prove a VM never ran twice and that nothing landed after its host lost the right to write
 * (host agent restarts and kills, HA failovers, migrations).
 *
 * Disk layout (512-byte sectors, little-endian):
 *   sector 0:            boot record {u32 magic "BOOT", u32 version 1, u64 boots, u64 nonce, u64 first_seq, u64 check}
 *   sectors 1 .. ring:   record of sequence number s at sector 1 + s % ring:
 *                        {u32 magic "SEQR", u32 version 1, u64 boots, u64 nonce, u64 seq, u64 tsc, u64 epoch, u64 check}
 *                        epoch = the machine's restore count (port 0xe0) when the record was made: it grows with
 *                        every migration, so a record an old host wrote after the handoff shows up as an older
 *                        epoch after a newer one along the sequence.
 * check = mix64 of the preceding words. Every boot increments `boots`, draws a fresh nonce from the
 * TSC, and continues after the highest sequence number found in the ring. Two instances running at
 * once would show as two nonces for one boot number, or as an older boot's record with a higher
 * sequence number than a newer boot's.
 *
 * args[0] = ring size in records (default 1024), args[1] = flush after every N records (default 1),
 * args[2] = records to write before powering off (0 = forever), args[3] = pause iterations between records. */
#include "guest.h"

#define BOOT_MAGIC 0x544f4f42u /* "BOOT" */
#define SEQ_MAGIC 0x52514553u  /* "SEQR" */

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static u64 check_of(const u64 *words, int count) {
    u64 c = 0x5eed5eed;
    for (int i = 0; i < count; i++) c = mix64(c ^ words[i]);
    return c;
}

int disk_sequence(const struct params *p, struct vblk *disk) {
    u64 ring = p->args[0] ? p->args[0] : 1024, flush_every = p->args[1] ? p->args[1] : 1;
    u64 limit = p->args[2], pause = p->args[3];
    if (ring + 1 > disk->capacity || ring > 65536) return R_BAD_PARAMETERS;
    vblk_poll_limit = 0; /* wait for I/O as long as it takes: the host may be adopting the VM */
    u64 *sector = heap_alloc(512, 512);
    u64 *ring_buffer = heap_alloc(ring * 512, 4096);
    if (!sector || !ring_buffer) return R_BAD_PARAMETERS;

    if (vblk_request(disk, VIRTIO_BLK_T_IN, 0, sector, 512) != 0) return R_IO_ERROR;
    u64 boots = ((u32)sector[0] == BOOT_MAGIC && check_of(sector, 5) == sector[5]) ? sector[1] + 1 : 1;
    u64 nonce = mix64(rdtsc() ^ ((u64)p->vcpu_count << 32) ^ boots);
    /* Continue after the highest sequence number in the ring (read in 64 KiB pieces). */
    u64 next = 0;
    for (u64 first = 0; first < ring; first += 128) {
        u64 count = ring - first < 128 ? ring - first : 128;
        if (vblk_request(disk, VIRTIO_BLK_T_IN, 1 + first, (u8 *)ring_buffer + first * 512, (u32)(count * 512)) != 0) return R_IO_ERROR;
    }
    for (u64 i = 0; i < ring; i++) {
        u64 *r = ring_buffer + i * 64;
        if ((u32)r[0] == SEQ_MAGIC && check_of(r, 6) == r[6] && r[3] + 1 > next) next = r[3] + 1;
    }
    memset(sector, 0, 512);
    sector[0] = BOOT_MAGIC | ((u64)1 << 32);
    sector[1] = boots;
    sector[2] = nonce;
    sector[3] = next;
    sector[5] = check_of(sector, 5);
    if (vblk_request(disk, VIRTIO_BLK_T_OUT, 0, sector, 512) != 0 || vblk_request(disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0)
        return R_IO_ERROR;
    gprintf("sequence: boot %lu nonce %016lx from seq %lu, ring %lu\n", boots, nonce, next, ring);
    marker(0x30);
    for (u64 written = 0; limit == 0 || written < limit; written++, next++) {
        memset(sector, 0, 512);
        sector[0] = SEQ_MAGIC | ((u64)1 << 32);
        sector[1] = boots;
        sector[2] = nonce;
        sector[3] = next;
        sector[4] = rdtsc();
        sector[5] = inl(EPOCH_PORT);
        sector[6] = check_of(sector, 6);
        if (vblk_request(disk, VIRTIO_BLK_T_OUT, 1 + next % ring, sector, 512) != 0) return R_IO_ERROR;
        if ((written + 1) % flush_every == 0 && vblk_request(disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0) return R_IO_ERROR;
        if ((next & 1023) == 1023) gprintf("sequence: seq %lu\n", next);
        for (u64 k = 0; k < pause; k++) cpu_relax();
    }
    if (vblk_request(disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0) != 0) return R_IO_ERROR;
    gprintf("sequence: wrote up to seq %lu\n", next - 1);
    return R_SUCCESS;
}
