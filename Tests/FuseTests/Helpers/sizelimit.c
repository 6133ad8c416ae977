// Tries every way of writing past a file's maximum size and prints one line per attempt:
// "<attempt> <result>", where result is "ok <bytes>" or the errno name (EFBIG, EIO, ...).
// Usage: sizelimit FILE SOURCE MAX_SIZE
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *attempt, long long result) {
    if (result >= 0) printf("%s ok %lld\n", attempt, result);
    else printf("%s %s\n", attempt, errno == EFBIG ? "EFBIG" : strerror(errno));
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    long long max = atoll(argv[3]);
    int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
    int direct = open(argv[1], O_RDWR | O_DIRECT);
    int source = open(argv[2], O_RDONLY);
    if (fd < 0 || direct < 0 || source < 0) { perror("open"); return 1; }
    void *block;
    if (posix_memalign(&block, 4096, 4096) != 0) return 1;
    memset(block, 7, 4096);

    report("ftruncate", ftruncate(fd, max + 1));
    report("fallocate", fallocate(fd, 0, max - 4096, 8192));
    off_t in = 0, out = max;
    report("copy_file_range-max", copy_file_range(source, &in, fd, &out, 4096, 0));
    in = 0; out = 0x7FFFFFFFFFFFE000LL;
    report("copy_file_range-2^63", copy_file_range(source, &in, fd, &out, 4096, 0));
    report("pwrite-direct", pwrite(direct, block, 4096, max));
    report("pwrite-max", pwrite(fd, block, 4096, max));
    report("pwrite-2^62", pwrite(fd, block, 4096, 1LL << 62));
    report("fsync", fsync(fd));
    close(direct);
    close(fd);
    return 0;
}
