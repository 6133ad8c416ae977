/* Freestanding test guest: shared declarations. Runs at CPL3 with IOPL=3: port I/O traps to the VMM. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* ---- Test-guest ABI (mirrors Sources/Hypervisor/Machine/TestGuestABI.swift) ---------------- */
#define PARAM_MAGIC 0x42504754u /* "TGPB" */
#define EXIT_PORT 0xf4
#define MARKER_PORT 0xf8
#define PARK_PORT 0xfc
#define EPOCH_PORT 0xe0 /* 32-bit read: the machine's restore count (changes on migration) */

enum workload {
    WL_HELLO = 0,
    WL_VCPU_REPORT = 1,
    WL_DISK_WRITE_PATTERN = 2,
    WL_DISK_VERIFY_PATTERN = 3,
    WL_HOSTILE = 4,
    WL_MEMORY_FILL = 5,
    WL_DISK_THROUGHPUT = 6,
    WL_SPIN = 7,
    WL_HOSTILE_LIMITS = 8,
    WL_DISK_SEQUENCE = 9,
    WL_DISK_RANDOM = 10,
    WL_IDLE = 11,
    WL_HEARTBEAT = 12,
    WL_NET_RESPONDER = 13,
    WL_UDP_SEND = 14,
    WL_MEMORY_GENERATIONS = 15,
};

enum result {
    R_SUCCESS = 0,
    R_FAILURE = 1,
    R_BAD_PARAMETERS = 2,
    R_NO_DEVICE = 3,
    R_DEVICE_SETUP = 4,
    R_IO_ERROR = 5,
    R_VERIFY_MISMATCH = 6,
    R_HOSTILE_FAILED = 7,
    R_TIMEOUT = 8,
};

struct params {
    u32 magic;
    u32 version;
    u32 vcpu_count;
    u32 workload;
    u64 memory_size;
    u64 heap_start;
    u64 heap_end;
    u64 args[8];
    u64 tsc_khz; /* guest TSC frequency, filled in by the VMM (0: unknown) */
};

/* ---- Port I/O ------------------------------------------------------------------------------- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void marker(u32 code) { outl(MARKER_PORT, code); }
/* Blocks this vCPU in the VMM until the machine powers off (no busy waiting). */
__attribute__((noreturn)) static inline void park(void) { for (;;) outl(PARK_PORT, 0); }

/* ---- runtime.c ------------------------------------------------------------------------------ */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
void gprintf(const char *fmt, ...);
u64 mix64(u64 x);
/* Bump allocator over the heap for the bootstrap vCPU's buffers (aligned). */
void heap_init(u64 start, u64 end);
void *heap_alloc(u64 size, u64 align);

/* ---- pci.c ---------------------------------------------------------------------------------- */
u32 pci_read32(int slot, int reg);
void pci_write32(int slot, int reg, u32 value);
/* Lists bus 0 and returns the I/O base of the n-th virtio-blk (0 if none). */
u16 pci_find_virtio_blk(int index, int verbose);
/* The I/O base of the n-th virtio-net (0 if none). */
u16 pci_find_virtio_net(int index);

/* ---- virtio_blk.c --------------------------------------------------------------------------- */
struct vring_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vring_avail { u16 flags; u16 idx; u16 ring[]; };
struct vring_used_elem { u32 id; u32 len; };
struct vring_used { u16 flags; u16 idx; struct vring_used_elem ring[]; };

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_F_SEG_MAX (1u << 2)
#define VIRTIO_BLK_F_BLK_SIZE (1u << 6)
#define VIRTIO_BLK_F_FLUSH (1u << 9)
#define VIRTIO_BLK_F_DISCARD (1u << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1u << 14)
#define VBLK_DEFAULT_FEATURES (VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_SEG_MAX)

/* Legacy virtio-pci registers (offsets in I/O BAR0). */
#define REG_HOST_FEATURES 0
#define REG_GUEST_FEATURES 4
#define REG_QUEUE_PFN 8
#define REG_QUEUE_NUM 12
#define REG_QUEUE_SEL 14
#define REG_QUEUE_NOTIFY 16
#define REG_STATUS 18
#define REG_ISR 19
#define REG_CONFIG 20

struct blk_header { u32 type; u32 ioprio; u64 sector; };

struct vblk {
    u16 io;
    u16 qsize;
    struct vring_desc *desc;
    struct vring_avail *avail;
    volatile struct vring_used *used;
    u16 avail_idx;
    u16 used_idx;
    u64 capacity; /* sectors */
    u32 features;
    void *ring_memory;
    struct blk_header *headers; /* one per request slot */
    u8 *statuses;               /* one per request slot */
};

int vblk_init(struct vblk *d, u16 io);
/* Resets and sets the device up again, negotiating `features` (those the device offers). */
int vblk_init_with(struct vblk *d, u16 io, u32 features);
/* Status register of the device. */
u8 vblk_device_status(struct vblk *d);
/* One request with one data buffer; returns the virtio status (0 OK) or -1 on timeout. */
int vblk_request(struct vblk *d, u32 type, u64 sector, void *buffer, u32 length);
/* A batch of same-direction requests, each `length` bytes from consecutive sectors; one notify. */
int vblk_request_batch(struct vblk *d, u32 type, u64 first_sector, u8 *buffer, u32 length, int count);
/* A batch of same-direction requests of `length` bytes at the given sectors; one notify. */
int vblk_request_many(struct vblk *d, u32 type, const u64 *sectors, u8 *buffer, u32 length, int count);
/* Posts the chain already written at descriptor `head`, notifies, and waits for it.
 * Returns the used length, or -1 on timeout. */
long vblk_submit_chain(struct vblk *d, u16 head);

/* Spins waiting for a used entry before a request times out (0: wait forever). */
extern u64 vblk_poll_limit;

/* ---- virtio_net.c --------------------------------------------------------------------------- */
#define VIRTIO_NET_F_MAC (1u << 5)
#define VIRTIO_NET_F_STATUS (1u << 16)
#define VNET_HEADER 10u   /* struct virtio_net_hdr (no mergeable buffers) */
#define VNET_BUFFER 2048u /* one descriptor per buffer: header + frame */

struct vnet {
    u16 io;
    u16 rx_size, tx_size;
    struct vring_desc *rx_desc, *tx_desc;
    struct vring_avail *rx_avail, *tx_avail;
    volatile struct vring_used *rx_used, *tx_used;
    u16 rx_avail_idx, rx_used_idx, tx_avail_idx;
    u8 *rx_buffers, *tx_buffers;
    u32 features;
    u32 tx_unnotified;
    u8 mac[6];
    u64 rx_packets, tx_packets;
};

/* Resets the device, negotiates `wanted_features` (of those offered), posts every receive buffer. */
int vnet_init(struct vnet *d, u16 io, u32 wanted_features);
int vnet_link_up(struct vnet *d);
/* Queues one frame (without header); notifies the device every 32 frames or when `flush`. */
int vnet_send(struct vnet *d, const void *frame, u32 length, int flush);
void vnet_flush(struct vnet *d);
/* Hands up to `limit` received frames to `handler` and gives their buffers back; returns how many. */
int vnet_receive(struct vnet *d, void (*handler)(void *context, u8 *frame, u32 length), void *context, int limit);

/* ---- workloads ------------------------------------------------------------------------------ */
int net_responder(const struct params *p);
int udp_send(const struct params *p);
int hostile_tests(struct vblk *d);
/* Limits of the device and the VMM (hostile_limits.c): the bootstrap vCPU runs the checks, vCPU 1
 * plays a second driver thread when asked (hostile_helper never returns). */
int hostile_limits(struct vblk *d, const struct params *p);
void hostile_helper(void);
int disk_sequence(const struct params *p, struct vblk *disk);
int disk_random(const struct params *p, struct vblk *disk);
__attribute__((noreturn)) int heartbeat(const struct params *p);
/* Never returns: per-page generations verified after every migration, and the gap probe. */
__attribute__((noreturn)) void memory_generations(const struct params *p, u32 vcpu, u32 count);

#endif
