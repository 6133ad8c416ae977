/* WL_DISK_RANDOM: random reads or writes of one size over the whole of disk 0, `depth` requests
 * per notify, for the disk benchmarks (markers 0x14 before the first request, 0x15 after the last).
 * args[0] = requests, args[1] = bytes per request (default 4096), args[2] = requests per notify
 * (default 16), args[3] = seed, args[4] = 1 to write (default: read). */
#include "guest.h"

int disk_random(const struct params *p, struct vblk *disk) {
    u64 requests = p->args[0] ? p->args[0] : 10000, size = p->args[1] ? p->args[1] : 4096;
    u64 depth = p->args[2] ? p->args[2] : 16, seed = p->args[3];
    u32 type = p->args[4] ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    u64 slots = disk->capacity * 512 / size;
    if (size % 512 || size > (1u << 20) || depth > 64 || slots == 0) return R_BAD_PARAMETERS;
    u8 *buffer = heap_alloc(size * depth, 4096);
    u64 *sectors = heap_alloc(depth * 8, 8);
    if (!buffer || !sectors) return R_BAD_PARAMETERS;
    for (u64 i = 0; i < size * depth; i += 8) *(u64 *)(buffer + i) = mix64(seed ^ i);
    marker(0x14);
    u64 state = seed;
    for (u64 done = 0; done < requests; done += depth) {
        u64 count = requests - done < depth ? requests - done : depth;
        for (u64 k = 0; k < count; k++) {
            state = mix64(state + 0x9e3779b97f4a7c15ull);
            sectors[k] = (state % slots) * (size / 512);
        }
        if (vblk_request_many(disk, type, sectors, buffer, (u32)size, (int)count) != 0) return R_IO_ERROR;
    }
    marker(0x15);
    gprintf("random: %lu %s of %lu bytes, %lu per notify\n", requests, type == VIRTIO_BLK_T_OUT ? "writes" : "reads", size, depth);
    return R_SUCCESS;
}
