// fsxcheck: a random file-operation checker in the spirit of fsx, written for the vmfs-fuse
// tests. It applies a seeded random sequence of writes, reads, truncates, hole punches, zeroed
// ranges, preallocations, mmap reads and writes, fsyncs and reopens to one file, and checks
// every read against an in-memory model of the file. The model is sparse: a sorted list of
// extents, each naming the operation that wrote it, so files of several GiB cost nothing.
// The data of operation t at file offset x is a pure function of (t, x), so any byte can be
// regenerated and checked.
//
//   fsxcheck [-N ops] [-S seed] [-l max_file_size] [-o max_op_length] [-m] [-V] [-q] FILE
//     -m  no mmap operations          -V  verify only: replay the model without I/O, then check
//     -q  quiet (no per-op log)           FILE against it (run on another host's mount)
//
// Exit status: 0 when every check passed, 1 on a mismatch or a failed call (with a report).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

// ---- model ---------------------------------------------------------------------------------

/// [start, end) holds the data of operation `tag`.
struct extent {
    uint64_t start, end, tag;
};

static struct extent *extents;
static size_t extent_count, extent_capacity;
static uint64_t model_size;

static uint64_t mix(uint64_t value) {
    value += 0x9e3779b97f4a7c15ULL;
    value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ULL;
    value = (value ^ (value >> 27)) * 0x94d049bb133111ebULL;
    return value ^ (value >> 31);
}

/// The byte operation `tag` wrote at file offset `offset`.
static uint8_t data_byte(uint64_t tag, uint64_t offset) {
    return (uint8_t)(mix(tag * 0x100000001b3ULL ^ (offset >> 3)) >> ((offset & 7) * 8));
}

static void fill(uint8_t *buffer, uint64_t tag, uint64_t offset, size_t length) {
    for (size_t i = 0; i < length; i++) buffer[i] = data_byte(tag, offset + i);
}

static void reserve(size_t count) {
    if (count <= extent_capacity) return;
    extent_capacity = count * 2 + 16;
    extents = realloc(extents, extent_capacity * sizeof *extents);
    if (!extents) { perror("realloc"); exit(1); }
}

/// Removes data from [start, end) (it reads as zeros afterwards).
static void model_clear(uint64_t start, uint64_t end) {
    if (start >= end) return;
    reserve(extent_count + 2);
    size_t out = 0;
    struct extent split = {0, 0, 0};
    int have_split = 0;
    for (size_t i = 0; i < extent_count; i++) {
        struct extent e = extents[i];
        if (e.end <= start || e.start >= end) { extents[out++] = e; continue; }
        if (e.start < start && e.end > end) {  // the range is inside: keep both sides
            split = (struct extent){end, e.end, e.tag};
            have_split = 1;
            e.end = start;
            extents[out++] = e;
            continue;
        }
        if (e.start < start) { e.end = start; extents[out++] = e; continue; }
        if (e.end > end) { e.start = end; extents[out++] = e; continue; }
        // fully covered: dropped
    }
    extent_count = out;
    if (have_split) {
        size_t at = 0;
        while (at < extent_count && extents[at].start < split.start) at++;
        memmove(&extents[at + 1], &extents[at], (extent_count - at) * sizeof *extents);
        extents[at] = split;
        extent_count++;
    }
}

static void model_write(uint64_t start, uint64_t end, uint64_t tag) {
    model_clear(start, end);
    reserve(extent_count + 1);
    size_t at = 0;
    while (at < extent_count && extents[at].start < start) at++;
    memmove(&extents[at + 1], &extents[at], (extent_count - at) * sizeof *extents);
    extents[at] = (struct extent){start, end, tag};
    extent_count++;
    if (end > model_size) model_size = end;
}

static void model_truncate(uint64_t size) {
    if (size < model_size) model_clear(size, UINT64_MAX);
    model_size = size;
}

/// Fills `buffer` with what the model says [offset, offset + length) holds.
static void model_expected(uint8_t *buffer, uint64_t offset, size_t length) {
    memset(buffer, 0, length);
    uint64_t end = offset + length;
    for (size_t i = 0; i < extent_count; i++) {
        struct extent e = extents[i];
        if (e.end <= offset) continue;
        if (e.start >= end) break;
        uint64_t from = e.start > offset ? e.start : offset;
        uint64_t to = e.end < end ? e.end : end;
        fill(buffer + (from - offset), e.tag, from, to - from);
    }
}

// ---- random numbers and the log ----------------------------------------------------------

static uint64_t rng_state;
static uint64_t next_random(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static uint64_t random_below(uint64_t bound) { return bound ? next_random() % bound : 0; }

#define LOG_KEEP 32
static char recent[LOG_KEEP][160];
static uint64_t logged;
static int quiet;

static void note(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(recent[logged % LOG_KEEP], sizeof recent[0], format, args);
    va_end(args);
    if (!quiet) printf("%s\n", recent[logged % LOG_KEEP]);
    logged++;
}

static void report_and_exit(const char *format, ...) {
    fprintf(stderr, "fsxcheck: FAILED: ");
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fprintf(stderr, "\nlast operations:\n");
    uint64_t first = logged > LOG_KEEP ? logged - LOG_KEEP : 0;
    for (uint64_t i = first; i < logged; i++) fprintf(stderr, "  %s\n", recent[i % LOG_KEEP]);
    exit(1);
}

// ---- operations --------------------------------------------------------------------------

static const char *path;
static int fd = -1;
static uint64_t max_size = 6ULL << 30;
static uint64_t max_length = 256 << 10;
static int use_mmap = 1;
static int verify_only;
static uint8_t *actual, *expected;
static long page_size;

static void check(uint64_t offset, size_t length, const char *how) {
    model_expected(expected, offset, length);
    if (memcmp(actual, expected, length) == 0) return;
    for (size_t i = 0; i < length; i++) {
        if (actual[i] != expected[i]) {
            size_t run = 0, differing = 0, last = i;
            while (i + run < length && actual[i + run] != expected[i + run]) run++;
            for (size_t j = i; j < length; j++) if (actual[j] != expected[j]) { differing++; last = j; }
            char got[3 * 48 + 1] = "", want[3 * 48 + 1] = "";
            for (size_t j = 0; j < 48 && i + j < length; j++) {
                snprintf(got + 3 * j, 4, " %02x", actual[i + j]);
                snprintf(want + 3 * j, 4, " %02x", expected[i + j]);
            }
            report_and_exit("%s at 0x%" PRIx64 " (+%zu of %zu): got 0x%02x, expected 0x%02x; %zu bytes differ from there, "
                            "%zu in all up to +%zu\n  got: %s\n want:%s",
                            how, offset + i, i, length, actual[i], expected[i], run, differing, last, got, want);
        }
    }
}

static void do_open(void) {
    fd = open(path, O_RDWR | (verify_only ? 0 : O_CREAT), 0644);
    if (fd < 0) report_and_exit("open %s: %s", path, strerror(errno));
}

static void do_read(uint64_t offset, size_t length) {
    size_t want = offset >= model_size ? 0 : (offset + length > model_size ? model_size - offset : length);
    ssize_t got = pread(fd, actual, length, (off_t)offset);
    if (got < 0) report_and_exit("pread 0x%" PRIx64 "+%zu: %s", offset, length, strerror(errno));
    if ((size_t)got != want) report_and_exit("pread 0x%" PRIx64 "+%zu returned %zd, model size 0x%" PRIx64 " says %zu",
                                             offset, length, got, model_size, want);
    check(offset, want, "read");
}

static void do_map_read(uint64_t offset, size_t length) {
    if (offset >= model_size) return;
    if (offset + length > model_size) length = model_size - offset;
    uint64_t base = offset & ~(uint64_t)(page_size - 1);
    size_t span = (size_t)(offset - base) + length;
    uint8_t *map = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, (off_t)base);
    if (map == MAP_FAILED) report_and_exit("mmap read 0x%" PRIx64 "+%zu: %s", offset, length, strerror(errno));
    memcpy(actual, map + (offset - base), length);
    munmap(map, span);
    check(offset, length, "mmap read");
}

static void do_write(uint64_t offset, size_t length, uint64_t tag) {
    fill(actual, tag, offset, length);
    ssize_t done = pwrite(fd, actual, length, (off_t)offset);
    if (done != (ssize_t)length) report_and_exit("pwrite 0x%" PRIx64 "+%zu: %zd (%s)", offset, length, done, strerror(errno));
}

static void do_map_write(uint64_t offset, size_t length, uint64_t tag) {
    if (offset + length > model_size) {
        if (ftruncate(fd, (off_t)(offset + length)) != 0) report_and_exit("ftruncate before mmap write: %s", strerror(errno));
    }
    uint64_t base = offset & ~(uint64_t)(page_size - 1);
    size_t span = (size_t)(offset - base) + length;
    uint8_t *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
    if (map == MAP_FAILED) report_and_exit("mmap write 0x%" PRIx64 "+%zu: %s", offset, length, strerror(errno));
    fill(map + (offset - base), tag, offset, length);
    if (msync(map, span, MS_SYNC) != 0) report_and_exit("msync: %s", strerror(errno));
    munmap(map, span);
}

static void verify_whole_file(void) {
    struct stat st;
    if (fstat(fd, &st) != 0) report_and_exit("fstat: %s", strerror(errno));
    if ((uint64_t)st.st_size != model_size)
        report_and_exit("final size is 0x%" PRIx64 ", model says 0x%" PRIx64, (uint64_t)st.st_size, model_size);
    uint64_t checked = 0;
    for (size_t i = 0; i < extent_count; i++) {
        for (uint64_t at = extents[i].start; at < extents[i].end; at += max_length) {
            size_t length = extents[i].end - at < max_length ? (size_t)(extents[i].end - at) : max_length;
            do_read(at, length);
            checked += length;
        }
        // the bytes just before and after each extent (holes or other data)
        if (extents[i].start > 0) do_read(extents[i].start - 1, 1);
        do_read(extents[i].end, 4096);
    }
    for (int i = 0; i < 64 && model_size > 0; i++) do_read(random_below(model_size), 4096);  // samples, holes mostly
    note("verified the whole file: size 0x%" PRIx64 ", %zu data extents, %" PRIu64 " data bytes", model_size, extent_count, checked);
}

int main(int argc, char **argv) {
    uint64_t operations = 10000, seed = 1;
    int option;
    while ((option = getopt(argc, argv, "N:S:l:o:mVq")) != -1) {
        switch (option) {
        case 'N': operations = strtoull(optarg, NULL, 0); break;
        case 'S': seed = strtoull(optarg, NULL, 0); break;
        case 'l': max_size = strtoull(optarg, NULL, 0); break;
        case 'o': max_length = strtoull(optarg, NULL, 0); break;
        case 'm': use_mmap = 0; break;
        case 'V': verify_only = 1; break;
        case 'q': quiet = 1; break;
        default:
            fprintf(stderr, "usage: fsxcheck [-N ops] [-S seed] [-l max_size] [-o max_op_length] [-m] [-V] [-q] FILE\n");
            return 2;
        }
    }
    if (optind != argc - 1 || max_length == 0 || max_size < max_length * 2) {
        fprintf(stderr, "fsxcheck: need one FILE and max_size >= 2 * max_op_length\n");
        return 2;
    }
    path = argv[optind];
    page_size = sysconf(_SC_PAGESIZE);
    rng_state = mix(seed) | 1;
    if (posix_memalign((void **)&actual, 4096, max_length + 4096) || posix_memalign((void **)&expected, 4096, max_length + 4096)) {
        perror("posix_memalign");
        return 1;
    }
    do_open();
    if (!verify_only && ftruncate(fd, 0) != 0) report_and_exit("ftruncate 0: %s", strerror(errno));
    uint64_t counts[11] = {0};
    for (uint64_t op = 1; op <= operations; op++) {
        uint64_t kind = random_below(100);
        // Lengths: mostly small and unaligned, sometimes whole pages or up to max_length.
        size_t length = random_below(4) == 0 ? (size_t)(1 + random_below(max_length))
                      : random_below(3) == 0 ? (size_t)((1 + random_below(16)) * 4096) : (size_t)(1 + random_below(8192));
        if (length > max_length) length = max_length;
        // Offsets: anywhere up to max_size for writes, inside the file for most reads; some aligned.
        uint64_t anywhere = random_below(max_size - length);
        uint64_t inside = model_size ? random_below(model_size) : 0;
        if (random_below(4) == 0) { anywhere &= ~4095ULL; inside &= ~4095ULL; }
        if (kind < 30) {                                   // write
            counts[0]++;
            uint64_t offset = random_below(3) == 0 ? inside : anywhere;
            note("%" PRIu64 " write 0x%" PRIx64 " +%zu", op, offset, length);
            if (!verify_only) do_write(offset, length, op);
            model_write(offset, offset + length, op);
        } else if (kind < 55) {                            // read
            counts[1]++;
            note("%" PRIu64 " read 0x%" PRIx64 " +%zu", op, inside, length);
            if (!verify_only) do_read(inside, length);
        } else if (kind < 62) {                            // mmap write
            if (!use_mmap) continue;
            counts[2]++;
            uint64_t offset = random_below(2) ? inside : anywhere;
            note("%" PRIu64 " mapwrite 0x%" PRIx64 " +%zu", op, offset, length);
            if (!verify_only) do_map_write(offset, length, op);
            if (offset + length > model_size) model_truncate(offset + length);
            model_write(offset, offset + length, op);
        } else if (kind < 72) {                            // mmap read
            if (!use_mmap) continue;
            counts[3]++;
            note("%" PRIu64 " mapread 0x%" PRIx64 " +%zu", op, inside, length);
            if (!verify_only) do_map_read(inside, length);
        } else if (kind < 78) {                            // truncate (grow or shrink)
            counts[4]++;
            uint64_t size = random_below(3) == 0 ? random_below(max_size) : (model_size ? random_below(model_size * 2 > max_size ? max_size : model_size * 2 + 1) : 0);
            note("%" PRIu64 " truncate 0x%" PRIx64 " (was 0x%" PRIx64 ")", op, size, model_size);
            if (!verify_only && ftruncate(fd, (off_t)size) != 0) report_and_exit("ftruncate 0x%" PRIx64 ": %s", size, strerror(errno));
            model_truncate(size);
        } else if (kind < 84) {                            // punch a hole
            counts[5]++;
            uint64_t span = random_below(2) ? length : (1 + random_below(8)) << 20;
            note("%" PRIu64 " punch 0x%" PRIx64 " +%" PRIu64, op, inside, span);
            if (!verify_only && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)inside, (off_t)span) != 0)
                report_and_exit("punch hole: %s", strerror(errno));
            model_clear(inside, inside + span < model_size ? inside + span : model_size);
        } else if (kind < 88) {                            // zero a range
            counts[6]++;
            int keep = (int)random_below(2);
            note("%" PRIu64 " zero 0x%" PRIx64 " +%zu%s", op, inside, length, keep ? " keep-size" : "");
            if (!verify_only && fallocate(fd, FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0), (off_t)inside, (off_t)length) != 0)
                report_and_exit("zero range: %s", strerror(errno));
            model_clear(inside, inside + length);
            if (!keep && inside + length > model_size) model_truncate(inside + length);
        } else if (kind < 92) {                            // preallocate
            counts[7]++;
            int keep = (int)random_below(2);
            uint64_t span = (1 + random_below(4)) << 20;
            note("%" PRIu64 " fallocate 0x%" PRIx64 " +%" PRIu64 "%s", op, anywhere, span, keep ? " keep-size" : "");
            if (!verify_only && fallocate(fd, keep ? FALLOC_FL_KEEP_SIZE : 0, (off_t)anywhere, (off_t)span) != 0)
                report_and_exit("fallocate: %s", strerror(errno));
            if (!keep && anywhere + span > model_size) model_truncate(anywhere + span);
        } else if (kind < 96) {                            // fsync
            counts[8]++;
            note("%" PRIu64 " fsync", op);
            if (!verify_only && fsync(fd) != 0) report_and_exit("fsync: %s", strerror(errno));
        } else if (kind < 98) {                            // close and reopen
            counts[9]++;
            note("%" PRIu64 " reopen", op);
            if (!verify_only) { close(fd); do_open(); }
        } else {                                           // size check
            counts[10]++;
            note("%" PRIu64 " stat", op);
            struct stat st;
            if (!verify_only && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != model_size))
                report_and_exit("fstat size 0x%" PRIx64 ", model 0x%" PRIx64, (uint64_t)st.st_size, model_size);
        }
    }
    quiet = 1;
    verify_whole_file();
    if (close(fd) != 0) report_and_exit("close: %s", strerror(errno));
    printf("OK %" PRIu64 " operations (seed %" PRIu64 "): %" PRIu64 " writes, %" PRIu64 " reads, %" PRIu64 " mmap writes, %" PRIu64
           " mmap reads, %" PRIu64 " truncates, %" PRIu64 " punches, %" PRIu64 " zero ranges, %" PRIu64 " preallocations, %" PRIu64
           " fsyncs, %" PRIu64 " reopens; final size 0x%" PRIx64 " in %zu extents\n",
           operations, seed, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8],
           counts[9], model_size, extent_count);
    return 0;
}
