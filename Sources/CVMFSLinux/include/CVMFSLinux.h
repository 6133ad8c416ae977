#ifndef CVMFSLINUX_H
#define CVMFSLINUX_H

// Linux constants and calls that Swift's Glibc module does not show (they are _GNU_SOURCE-only,
// function-like macros, or variadic). The implementation file is compiled with _GNU_SOURCE;
// this header never defines it, so the glibc structs seen by Swift stay identical everywhere.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

// ---- open(2) / fcntl(2) ------------------------------------------------------------------
extern const int CVMFS_O_DIRECT;
extern const int CVMFS_F_OFD_GETLK;
extern const int CVMFS_F_OFD_SETLK;
extern const int CVMFS_F_OFD_SETLKW;

/// Takes (type = F_WRLCK/F_RDLCK) or drops (F_UNLCK) an OFD byte-range lock.
/// `wait` selects F_OFD_SETLKW. Returns 0 or -errno.
int cvmfs_ofd_lock(int fd, short type, int64_t start, int64_t length, int wait);
/// 1 when another open file description holds a conflicting OFD lock on the range, 0 when not, -errno on error.
int cvmfs_ofd_range_locked(int fd, int64_t start, int64_t length);

// ---- fallocate(2) ------------------------------------------------------------------------
extern const int CVMFS_FALLOC_FL_KEEP_SIZE;
extern const int CVMFS_FALLOC_FL_PUNCH_HOLE;
extern const int CVMFS_FALLOC_FL_ZERO_RANGE;
/// lseek(2) whences for sparse files (SEEK_DATA, SEEK_HOLE).
extern const int CVMFS_SEEK_DATA;
extern const int CVMFS_SEEK_HOLE;
/// fallocate(2); returns 0 or -errno.
int cvmfs_fallocate(int fd, int mode, int64_t offset, int64_t length);

// ---- block-device ioctls -----------------------------------------------------------------
/// Size in bytes of a block device (BLKGETSIZE64); 0 or -errno.
int cvmfs_block_device_size(int fd, uint64_t *size);
/// Logical sector size of a block device (BLKSSZGET); 0 or -errno.
int cvmfs_block_device_logical_sector_size(int fd, int *size);
/// BLKDISCARD over [offset, offset+length); 0 or -errno.
int cvmfs_block_device_discard(int fd, uint64_t offset, uint64_t length);
/// BLKZEROOUT over [offset, offset+length); 0 or -errno.
int cvmfs_block_device_zero_out(int fd, uint64_t offset, uint64_t length);
/// Direct-I/O alignment reported by statx(STATX_DIOALIGN): memory and offset alignment.
/// Returns 0 on success, -errno or -ENOTSUP when the kernel does not report it.
int cvmfs_direct_io_alignment(int fd, uint32_t *memory_alignment, uint32_t *offset_alignment);

// ---- misc ---------------------------------------------------------------------------------
pid_t cvmfs_gettid(void);
/// Names the calling thread (at most 15 bytes are kept).
void cvmfs_set_thread_name(const char *name);
/// 1 when the calling thread is detached, 0 when it is joinable, -errno on failure.
int cvmfs_thread_is_detached(void);
int cvmfs_eventfd(unsigned int initial, int flags);
extern const int CVMFS_EFD_CLOEXEC;
extern const int CVMFS_EFD_NONBLOCK;
/// ioctl whose third argument is an unsigned long (wider than int).
int cvmfs_ioctl_ulong(int fd, unsigned long request, unsigned long argument);
/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC).
uint64_t cvmfs_monotonic_ns(void);
/// Realtime clock in nanoseconds since the epoch (CLOCK_REALTIME).
int64_t cvmfs_realtime_ns(void);
/// Reads /etc/machine-id style hex into 16 bytes; 0 on success, -errno otherwise.
int cvmfs_read_machine_id(const char *path, uint8_t out[16]);
/// Fills `count` bytes from getrandom(2); 0 or -errno.
int cvmfs_random_bytes(void *buffer, size_t count);

// ---- CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2 ------------------
/// Continues a CRC32C over `length` bytes. Start with crc = 0; the function applies the
/// standard pre- and post-inversion, so crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
uint32_t cvmfs_crc32c(uint32_t crc, const void *data, size_t length);

#include "cvmfs_process.h"
#include "cvmfs_net.h"
#include "cvmfs_shared.h"

#endif
