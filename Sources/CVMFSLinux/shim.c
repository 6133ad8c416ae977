#ifndef _GNU_SOURCE
#error "CVMFSLinux must be compiled with _GNU_SOURCE (see Package.swift)"
#endif
#include "CVMFSLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const int CVMFS_O_DIRECT = O_DIRECT;
const int CVMFS_F_OFD_GETLK = F_OFD_GETLK;
const int CVMFS_F_OFD_SETLK = F_OFD_SETLK;
const int CVMFS_F_OFD_SETLKW = F_OFD_SETLKW;
const int CVMFS_FALLOC_FL_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
const int CVMFS_FALLOC_FL_PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
const int CVMFS_FALLOC_FL_ZERO_RANGE = FALLOC_FL_ZERO_RANGE;
const int CVMFS_SEEK_DATA = SEEK_DATA;
const int CVMFS_SEEK_HOLE = SEEK_HOLE;
const int CVMFS_EFD_CLOEXEC = EFD_CLOEXEC;
const int CVMFS_EFD_NONBLOCK = EFD_NONBLOCK;

int cvmfs_ofd_lock(int fd, short type, int64_t start, int64_t length, int wait) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = start;
    lock.l_len = length;
    lock.l_pid = 0;
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &lock) == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

int cvmfs_ofd_range_locked(int fd, int64_t start, int64_t length) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = start;
    lock.l_len = length;
    if (fcntl(fd, F_OFD_GETLK, &lock) != 0) return -errno;
    return lock.l_type == F_UNLCK ? 0 : 1;
}

int cvmfs_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    for (;;) {
        if (fallocate(fd, mode, offset, length) == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

int cvmfs_block_device_size(int fd, uint64_t *size) {
    return ioctl(fd, BLKGETSIZE64, size) == 0 ? 0 : -errno;
}

int cvmfs_block_device_logical_sector_size(int fd, int *size) {
    return ioctl(fd, BLKSSZGET, size) == 0 ? 0 : -errno;
}

int cvmfs_block_device_discard(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = { offset, length };
    return ioctl(fd, BLKDISCARD, range) == 0 ? 0 : -errno;
}

int cvmfs_block_device_zero_out(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = { offset, length };
    return ioctl(fd, BLKZEROOUT, range) == 0 ? 0 : -errno;
}

int cvmfs_direct_io_alignment(int fd, uint32_t *memory_alignment, uint32_t *offset_alignment) {
#ifdef STATX_DIOALIGN
    struct statx sx;
    memset(&sx, 0, sizeof sx);
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0) return -errno;
    if (!(sx.stx_mask & STATX_DIOALIGN)) return -ENOTSUP;
    *memory_alignment = sx.stx_dio_mem_align;
    *offset_alignment = sx.stx_dio_offset_align;
    return 0;
#else
    (void)fd; (void)memory_alignment; (void)offset_alignment;
    return -ENOTSUP;
#endif
}

pid_t cvmfs_gettid(void) { return gettid(); }

int cvmfs_eventfd(unsigned int initial, int flags) { return eventfd(initial, flags); }

int cvmfs_ioctl_ulong(int fd, unsigned long request, unsigned long argument) {
    return ioctl(fd, request, argument);
}

uint64_t cvmfs_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t cvmfs_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + (int64_t)ts.tv_nsec;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cvmfs_read_machine_id(const char *path, uint8_t out[16]) {
    FILE *file = fopen(path, "re");
    if (!file) return -errno;
    char text[64];
    size_t count = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[count] = 0;
    int nibbles = 0;
    for (size_t i = 0; i < count && nibbles < 32; i++) {
        int v = hex_value(text[i]);
        if (v < 0) continue;
        if (nibbles % 2 == 0) out[nibbles / 2] = (uint8_t)(v << 4);
        else out[nibbles / 2] |= (uint8_t)v;
        nibbles++;
    }
    return nibbles == 32 ? 0 : -EINVAL;
}

int cvmfs_random_bytes(void *buffer, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = getrandom((char *)buffer + done, count - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        done += (size_t)n;
    }
    return 0;
}

#include <pthread.h>
void cvmfs_set_thread_name(const char *name) {
    char buffer[16];
    strncpy(buffer, name, 15);
    buffer[15] = 0;
    pthread_setname_np(pthread_self(), buffer);
}

int cvmfs_thread_is_detached(void) {
    pthread_attr_t attributes;
    int result = pthread_getattr_np(pthread_self(), &attributes);
    if (result != 0) return -result;
    int state = 0;
    result = pthread_attr_getdetachstate(&attributes, &state);
    pthread_attr_destroy(&attributes);
    if (result != 0) return -result;
    return state == PTHREAD_CREATE_DETACHED;
}
