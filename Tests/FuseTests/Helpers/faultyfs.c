// faultyfs: a one-file FUSE filesystem for the vmfs-fuse I/O-error tests. It serves BACKING as
// /disk.img and fails reads and writes of a chosen byte range of it with EIO, so a VMFS volume
// on /disk.img sees real device errors. The range is set by writing "START LENGTH" to /fault
// (and cleared by writing "clear"); /fault reads back the current range and the error count.
//
//   faultyfs BACKING MOUNTPOINT [libfuse options, e.g. -f -o auto_unmount]
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *backing;
static int backing_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t fault_start, fault_length, errors;

static int faulty(uint64_t offset, uint64_t length) {
    pthread_mutex_lock(&lock);
    int hit = fault_length && offset < fault_start + fault_length && offset + length > fault_start;
    if (hit) errors++;
    pthread_mutex_unlock(&lock);
    return hit;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (strcmp(path, "/disk.img") == 0) {
        if (fstat(backing_fd, st) != 0) return -errno;
        st->st_nlink = 1;
        return 0;
    }
    if (strcmp(path, "/fault") == 0) {
        st->st_mode = S_IFREG | 0644;
        st->st_nlink = 1;
        st->st_size = 128;
        return 0;
    }
    return -ENOENT;
}

static int fs_readdir(const char *path, void *buffer, fuse_fill_dir_t fill, off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
    (void)offset; (void)fi; (void)flags;
    if (strcmp(path, "/") != 0) return -ENOENT;
    fill(buffer, ".", NULL, 0, 0);
    fill(buffer, "..", NULL, 0, 0);
    fill(buffer, "disk.img", NULL, 0, 0);
    fill(buffer, "fault", NULL, 0, 0);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    if (strcmp(path, "/disk.img") != 0 && strcmp(path, "/fault") != 0) return -ENOENT;
    fi->direct_io = 1;  // no page cache here: every access reaches this process
    return 0;
}

static int fs_read(const char *path, char *buffer, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)fi;
    if (strcmp(path, "/fault") == 0) {
        char text[128];
        pthread_mutex_lock(&lock);
        int length = snprintf(text, sizeof text, "%" PRIu64 " %" PRIu64 " errors %" PRIu64 "\n", fault_start, fault_length, errors);
        pthread_mutex_unlock(&lock);
        if (offset >= length) return 0;
        if ((size_t)(length - offset) < size) size = (size_t)(length - offset);
        memcpy(buffer, text + offset, size);
        return (int)size;
    }
    if (faulty((uint64_t)offset, size)) return -EIO;
    ssize_t done = pread(backing_fd, buffer, size, offset);
    return done < 0 ? -errno : (int)done;
}

static int fs_write(const char *path, const char *buffer, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)fi;
    if (strcmp(path, "/fault") == 0) {
        char text[128] = {0};
        memcpy(text, buffer, size < sizeof text - 1 ? size : sizeof text - 1);
        uint64_t start = 0, length = 0;
        pthread_mutex_lock(&lock);
        if (strncmp(text, "clear", 5) == 0) {
            fault_start = fault_length = 0;
        } else if (sscanf(text, "%" SCNu64 " %" SCNu64, &start, &length) == 2) {
            fault_start = start;
            fault_length = length;
        } else {
            pthread_mutex_unlock(&lock);
            return -EINVAL;
        }
        pthread_mutex_unlock(&lock);
        return (int)size;
    }
    if (faulty((uint64_t)offset, size)) return -EIO;
    ssize_t done = pwrite(backing_fd, buffer, size, offset);
    return done < 0 ? -errno : (int)done;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    (void)fi;
    if (strcmp(path, "/fault") == 0) return 0;
    return ftruncate(backing_fd, size) == 0 ? 0 : -errno;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    (void)path; (void)fi;
    return (datasync ? fdatasync(backing_fd) : fsync(backing_fd)) == 0 ? 0 : -errno;
}

static int fs_fallocate(const char *path, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
    (void)fi;
    if (strcmp(path, "/disk.img") != 0) return -EOPNOTSUPP;
    if (faulty((uint64_t)offset, (uint64_t)length)) return -EIO;
    return fallocate(backing_fd, mode, offset, length) == 0 ? 0 : -errno;
}

static const struct fuse_operations operations = {
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .read = fs_read,
    .write = fs_write,
    .truncate = fs_truncate,
    .fsync = fs_fsync,
    .fallocate = fs_fallocate,
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: faultyfs BACKING MOUNTPOINT [libfuse options]\n");
        return 2;
    }
    backing = argv[1];
    backing_fd = open(backing, O_RDWR);
    if (backing_fd < 0) {
        perror(backing);
        return 1;
    }
    argv[1] = argv[0];  // libfuse sees: faultyfs MOUNTPOINT [options]
    return fuse_main(argc - 1, argv + 1, &operations, NULL);
}
