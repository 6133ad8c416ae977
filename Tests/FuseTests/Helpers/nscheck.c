// nscheck: a namespace stress checker for vmfs-fuse, as fsxcheck is for file data.
//
// Worker processes on one or more mounts of the same volume (one mount = one host) create,
// open for writing, write, truncate, fsync, fchmod/futimens, close, read, stat, list, rename
// (replace, RENAME_NOREPLACE, RENAME_EXCHANGE) and unlink files drawn from a small set of
// names, with random pauses, all at once. Every call's outcome is checked against what a host
// may observe, and file contents against a model shared by all workers.
//
// The model. Files are tracked by *identity*, not by name (names move under renames). Every
// 8-byte word k of identity i holds word(i, k), so any word read tells which file and which
// offset it came from, and a hole reads as zero. An identity is written only by its *owner*:
// the worker that created it, or that later opened it for writing and holds flock(LOCK_EX) on
// it (flock is per host; across hosts the volume's exclusive file lock keeps writers apart).
// The owner records every change (length, zero ranges) in the shared model before it
// releases the identity and closes. So:
//   - a file nobody owns reads back exactly as the model says;
//   - while a worker holds a file open, no worker of another host may own it;
//   - any read shows only words of one identity at their own offsets, or zeros;
//   - after a run, every surviving name holds a distinct identity whose content is exact.
// Allowed errors: ENOENT (another worker got there first), EEXIST (exclusive create,
// RENAME_NOREPLACE), EBUSY (another host has the file open; only with several hosts), ENOSPC
// (255 files). Anything else (EIO, ESTALE, a failed close or fsync) is a failure.
//
//   nscheck run   -m MODEL [-S seed] [-N ops] [-p procs] [-n names] [-L max_len] [-D pause_us]
//                 [-k kill_ms -P daemon_pid,...] MOUNT...
//       PROCS workers per MOUNT do OPS operations in all. MODEL (a file) holds the identities
//       of surviving files between runs: loaded and verified first when it exists, saved after
//       the final verification through every mount. With -k, the host of a random MOUNT is
//       killed (SIGKILL to its daemon and, half of the time, its workers) after about kill_ms:
//       the files its workers owned become uncertain (consistent words, any length), the run
//       ends early with exit status 3, and `verify` must follow once the host is back.
//   nscheck verify -m MODEL MOUNT...      checks every surviving file through every mount
//   nscheck churn  [-p procs] [-N iterations] [-n names] MOUNT
//       the issue-10 reproduction: create, write, close and rename (often replacing)
//   nscheck cycles [-p procs] [-N cycles] MOUNT
//       create, close, unlink cycles split over the workers; then 255 creates must succeed
//       (and are removed again)
//
// Exit status: 0 all checks passed, 1 a check failed (reported on stderr), 2 usage,
// 3 a host was killed (-k): run `verify` after it is back.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

#define MAX_HOSTS 8
#define MAX_WORKERS 64
#define MAX_NAMES 64
#define MAX_ZEROS 12
#define TABLE_SIZE (1u << 16)
#define MAX_FILES 255
#define OWNED_PER_WORKER 3

// ---- shared model ---------------------------------------------------------------------------

struct range { uint64_t start, end; };

/// One file identity, as its owners recorded it.
struct identity {
    uint32_t id;            // 0: free table entry
    int32_t owner;          // worker index, -1 when nobody owns it
    uint32_t epoch;         // +1 at every change of ownership
    uint8_t uncertain;      // its owner died: only consistency can be checked
    uint8_t removed;        // seen removed by the final verification (not saved)
    uint64_t length;
    uint64_t inode;         // st_ino through its owner's descriptor (for reports)
    uint32_t zero_count;
    struct range zeros[MAX_ZEROS];
};

struct shared {
    pthread_mutex_t mutex;
    uint32_t next_id;
    uint32_t failed;
    int killed_host;        // -1, or the host the parent killed (its workers' failures are expected)
    int uncertain_allowed;  // a host was killed: files without a known identity may be left
    int worker_host[MAX_WORKERS];
    uint64_t operations[MAX_WORKERS];
    uint32_t history_next[MAX_WORKERS];
    char history[MAX_WORKERS][16][160];  // each worker's last operations, for reports
    struct identity table[TABLE_SIZE];
};

static struct shared *shared;

static void lock_model(void) {
    int result = pthread_mutex_lock(&shared->mutex);
    if (result == EOWNERDEAD) pthread_mutex_consistent(&shared->mutex);  // a killed worker held it
}

static void unlock_model(void) { pthread_mutex_unlock(&shared->mutex); }

static struct identity *find(uint32_t id) {
    for (uint32_t probe = 0; probe < TABLE_SIZE; probe++) {
        struct identity *entry = &shared->table[(id + probe) % TABLE_SIZE];
        if (entry->id == id) return entry;
        if (entry->id == 0) return NULL;
    }
    return NULL;
}

static struct identity *insert(uint32_t id) {
    for (uint32_t probe = 0; probe < TABLE_SIZE; probe++) {
        struct identity *entry = &shared->table[(id + probe) % TABLE_SIZE];
        if (entry->id == 0 || entry->id == id) {
            memset(entry, 0, sizeof *entry);
            entry->id = id;
            entry->owner = -1;
            return entry;
        }
    }
    fprintf(stderr, "nscheck: identity table full\n");
    exit(1);
}

// ---- content ---------------------------------------------------------------------------------

static uint64_t word_of(uint32_t id, uint64_t k) {
    return ((uint64_t)id << 32) | (uint32_t)((uint32_t)k * 2654435761u ^ id ^ 0xa5a5a5a5u);
}

/// The identity a word belongs to, if it is word `k` of one.
static uint32_t decode_word(uint64_t word, uint64_t k) {
    uint32_t id = (uint32_t)(word >> 32);
    return id != 0 && word_of(id, k) == word ? id : 0;
}

static uint8_t byte_of(uint32_t id, uint64_t offset) {
    return (uint8_t)(word_of(id, offset >> 3) >> ((offset & 7) * 8));
}

static void fill(uint8_t *buffer, uint32_t id, uint64_t offset, size_t length) {
    for (size_t i = 0; i < length; i++) buffer[i] = byte_of(id, offset + i);
}

/// The bytes the model says `identity` holds.
static uint8_t *expected_content(const struct identity *identity) {
    uint8_t *buffer = malloc(identity->length + 1);
    if (!buffer) { perror("malloc"); exit(1); }
    fill(buffer, identity->id, 0, identity->length);
    for (uint32_t z = 0; z < identity->zero_count; z++) {
        const struct range *r = &identity->zeros[z];
        if (r->start < identity->length) memset(buffer + r->start, 0, (r->end < identity->length ? r->end : identity->length) - r->start);
    }
    return buffer;
}

static void model_remove_zeros(struct identity *identity, uint64_t start, uint64_t end) {
    struct range kept[MAX_ZEROS * 2];
    uint32_t count = 0;
    for (uint32_t z = 0; z < identity->zero_count; z++) {
        struct range r = identity->zeros[z];
        if (r.end <= start || r.start >= end) { kept[count++] = r; continue; }
        if (r.start < start) kept[count++] = (struct range){r.start, start};
        if (r.end > end) kept[count++] = (struct range){end, r.end};
    }
    if (count > MAX_ZEROS) count = MAX_ZEROS;  // callers keep room: see can_add_zero
    memcpy(identity->zeros, kept, count * sizeof kept[0]);
    identity->zero_count = count;
}

static int can_add_zero(const struct identity *identity) { return identity->zero_count + 2 <= MAX_ZEROS; }

static void model_write(struct identity *identity, uint64_t offset, uint64_t length) {
    if (offset > identity->length) identity->zeros[identity->zero_count++] = (struct range){identity->length, offset};
    model_remove_zeros(identity, offset, offset + length);
    if (offset + length > identity->length) identity->length = offset + length;
}

static void model_truncate(struct identity *identity, uint64_t size) {
    if (size < identity->length) {
        model_remove_zeros(identity, size, UINT64_MAX);
    } else if (size > identity->length) {
        identity->zeros[identity->zero_count++] = (struct range){identity->length, size};
    }
    identity->length = size;
}

/// Rebuilds an identity's model from what its file holds (after its owner died): zero ranges
/// are the runs of zero bytes that hide some nonzero byte of the identity (a data byte may
/// itself be zero). Returns 0, leaving the identity uncertain, when they are too many.
static int model_from_content(struct identity *identity, const uint8_t *data, uint64_t length) {
    struct range zeros[MAX_ZEROS];
    uint32_t count = 0;
    uint64_t offset = 0;
    while (offset < length) {
        if (data[offset] != 0) { offset++; continue; }
        uint64_t start = offset;
        int hides = 0;
        while (offset < length && data[offset] == 0) hides |= byte_of(identity->id, offset++) != 0;
        if (!hides) continue;
        if (count == MAX_ZEROS) return 0;
        zeros[count++] = (struct range){start, offset};
    }
    identity->length = length;
    identity->zero_count = count;
    memcpy(identity->zeros, zeros, count * sizeof zeros[0]);
    identity->uncertain = 0;
    return 1;
}

// ---- reporting -------------------------------------------------------------------------------

static int worker_index = -1;
static int quiet;

static void note(const char *format, ...) {
    if (worker_index < 0) return;
    va_list arguments;
    va_start(arguments, format);
    uint32_t next = shared->history_next[worker_index]++;
    vsnprintf(shared->history[worker_index][next % 16], sizeof shared->history[0][0], format, arguments);
    va_end(arguments);
}

static void print_history(int worker) {
    uint32_t next = shared->history_next[worker];
    if (next == 0) return;
    fprintf(stderr, "  last operations of worker %d (host %d), oldest first:\n", worker, shared->worker_host[worker]);
    for (uint32_t i = next > 16 ? next - 16 : 0; i < next; i++) fprintf(stderr, "    %s\n", shared->history[worker][i % 16]);
}

static int host = -1;

static void fail(const char *format, ...) {
    // A worker of a host that was killed meets ENOTCONN or worse: not a failure of the volume.
    if (shared && worker_index >= 0 && host >= 0 && __atomic_load_n(&shared->killed_host, __ATOMIC_SEQ_CST) == host) exit(3);
    // Another worker failed first: what this one sees may follow from that (its files are
    // left owned); the first report is the one that counts.
    if (shared && worker_index >= 0 && __atomic_load_n(&shared->failed, __ATOMIC_SEQ_CST)) exit(1);
    char message[1024];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    fprintf(stderr, "nscheck: FAILED (worker %d): %s\n", worker_index, message);
    if (shared && worker_index >= 0) print_history(worker_index);
    // Every other worker's last operations too: who touched the file, on which host.
    if (shared && getenv("NSCHECK_ALL_HISTORIES")) {
        for (int w = 0; w < MAX_WORKERS; w++) if (w != worker_index) print_history(w);
    } else {
        int other;
        if (shared && sscanf(message, "%*[^:]: file %*u is owned by worker %d", &other) == 1) print_history(other);
    }
    if (shared) __atomic_store_n(&shared->failed, 1, __ATOMIC_SEQ_CST);
    const char *debug = getenv("NSCHECK_ON_FAILURE");
    if (debug && system(debug) != 0) fprintf(stderr, "nscheck: %s failed\n", debug);
    exit(1);
}

// ---- random ----------------------------------------------------------------------------------

static uint64_t random_state;

static uint64_t next_random(void) {
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

static uint64_t below(uint64_t n) { return n ? next_random() % n : 0; }

// ---- configuration ---------------------------------------------------------------------------

static const char *mounts[MAX_HOSTS];
static int host_count;
static int processes = 4;
static long operations = 5000;
static int name_count = 12;
static uint64_t max_length = 1u << 20;
static int pause_us = 200;
static uint64_t seed;
static const char *model_path;

static void path_of(char *out, size_t size, int host, int name) {
    snprintf(out, size, "%s/n%02d", mounts[host], name);
}

static int is_allowed(int error, int allow_busy) {
    if (error == ENOENT || error == EEXIST || error == ENOSPC) return 1;
    return error == EBUSY && allow_busy;
}

static void full_write(int fd, const uint8_t *data, size_t length, uint64_t offset, const char *what) {
    size_t done = 0;
    while (done < length) {
        ssize_t written = pwrite(fd, data + done, length - done, (off_t)(offset + done));
        if (written <= 0) fail("%s: pwrite of %zu bytes at %" PRIu64 ": %s", what, length - done, offset + done, strerror(errno));
        done += (size_t)written;
    }
}

/// Reads the whole of `fd` (its size from fstat); returns the bytes and sets *length.
static uint8_t *read_all(int fd, uint64_t *length, const char *what) {
    struct stat info;
    if (fstat(fd, &info) != 0) fail("%s: fstat: %s", what, strerror(errno));
    uint64_t size = (uint64_t)info.st_size;
    uint8_t *data = malloc(size + 8);
    if (!data) { perror("malloc"); exit(1); }
    uint64_t done = 0;
    while (done < size + 8) {
        ssize_t got = pread(fd, data + done, size + 8 - done, (off_t)done);
        if (got < 0) fail("%s: pread at %" PRIu64 ": %s", what, done, strerror(errno));
        if (got == 0) break;
        done += (uint64_t)got;
    }
    // A worker of this host may change the file meanwhile: what was read is what counts.
    *length = done;
    return data;
}

/// Checks that every byte of `data` is zero or file `id`'s byte at its own offset (a zero range
/// may start or end inside a word, and a read racing a truncate of this host may see a word
/// half zeroed).
static void check_bytes_of(uint32_t id, const uint8_t *data, uint64_t length, const char *what) {
    for (uint64_t offset = 0; offset < length; offset++) {
        if (data[offset] != 0 && data[offset] != byte_of(id, offset))
            fail("%s: the byte at offset %" PRIu64 " (0x%02x) is not file %u's (0x%02x), which the rest of the file is",
                 what, offset, data[offset], id, byte_of(id, offset));
    }
}

/// Checks that `data` holds only bytes of one identity at their own offsets, or zeros. The
/// identity is the one of the first whole valid word; returns 0 when there is none (then
/// nothing can be told).
static uint32_t consistent_identity(const uint8_t *data, uint64_t length, const char *what) {
    uint32_t id = 0;
    for (uint64_t k = 0; (k + 1) * 8 <= length && !id; k++) {
        uint64_t word;
        memcpy(&word, data + k * 8, 8);
        if (word != 0) id = decode_word(word, k);
    }
    if (id) check_bytes_of(id, data, length, what);
    return id;
}

static void compare_exact(const struct identity *identity, const uint8_t *data, uint64_t length, const char *what) {
    if (length != identity->length)
        fail("%s: file %u is %" PRIu64 " bytes, the model says %" PRIu64, what, identity->id, length, identity->length);
    uint8_t *expected = expected_content(identity);
    for (uint64_t i = 0; i < length; i++) {
        if (data[i] != expected[i])
            fail("%s: file %u differs from the model at offset %" PRIu64 ": 0x%02x, expected 0x%02x",
                 what, identity->id, i, data[i], expected[i]);
    }
    free(expected);
}

// ---- a worker ----------------------------------------------------------------------------------

struct owned {
    int fd;
    struct identity *identity;
};

static struct owned owned[OWNED_PER_WORKER];
static int owned_count;
static int sync_before_release;

static void pause_randomly(void) {
    if (pause_us > 0 && below(4) == 0) usleep((useconds_t)below((uint64_t)pause_us));
}

/// Takes ownership of `identity` in the model.
static void own(struct identity *identity, int fd) {
    struct stat info;
    if (fstat(fd, &info) == 0) identity->inode = (uint64_t)info.st_ino;
    identity->owner = worker_index;
    identity->epoch++;
    owned[owned_count++] = (struct owned){fd, identity};
}

/// Writes bytes 0..7 if the file no longer starts with its identity word, so that whoever
/// opens it next can tell which file it is.
static void restore_header(struct owned *o) {
    struct identity *identity = o->identity;
    int intact = identity->length >= 8;
    for (uint32_t z = 0; z < identity->zero_count && intact; z++) if (identity->zeros[z].start < 8) intact = 0;
    if (intact) return;
    uint8_t header[8];
    fill(header, identity->id, 0, 8);
    full_write(o->fd, header, 8, 0, "writing a file's first word");
    lock_model();
    model_write(identity, 0, 8);
    unlock_model();
}

static void release(int index) {
    struct owned o = owned[index];
    restore_header(&o);
    // With hosts being killed, what the model calls final must be durable before it says so.
    if (sync_before_release && fsync(o.fd) != 0) fail("fsync of file %u: %s", o.identity->id, strerror(errno));
    lock_model();
    o.identity->owner = -1;
    o.identity->epoch++;
    unlock_model();
    note("close file %u (fd %d)", o.identity->id, o.fd);
    // flock goes with the descriptor: the next owner on this host can only start after this.
    if (close(o.fd) != 0) fail("close of file %u: %s", o.identity->id, strerror(errno));
    owned[index] = owned[--owned_count];
}

static void op_create(int name, int allow_busy) {
    char path[512];
    path_of(path, sizeof path, host, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    note("create %s -> %d (%s)", path, fd, fd < 0 ? strerror(errno) : "ok");
    if (fd < 0) {
        if (!is_allowed(errno, allow_busy)) fail("create %s: %s", path, strerror(errno));
        return;
    }
    // A worker of this host that opened the new file first gives it up (it cannot tell what
    // it is yet): wait for its flock.
    if (flock(fd, LOCK_EX) != 0) fail("flock of new %s: %s", path, strerror(errno));
    lock_model();
    uint32_t id = ++shared->next_id;
    struct identity *identity = insert(id);
    own(identity, fd);
    unlock_model();
    note("  created file %u", id);
    uint64_t length = 8 + below(below(2) ? 3000 : max_length / 4);
    uint8_t *data = malloc(length);
    fill(data, id, 0, length);
    full_write(fd, data, length, 0, "first write of a new file");
    free(data);
    lock_model();
    model_write(identity, 0, length);
    unlock_model();
}

/// Opens name `name` of this host for `flags`; -1 after an allowed failure.
static int open_name(int name, int flags, const char *what, int allow_busy, char *path, size_t size) {
    path_of(path, size, host, name);
    int fd = open(path, flags | O_CLOEXEC);
    note("%s %s -> %d (%s)", what, path, fd, fd < 0 ? strerror(errno) : "ok");
    if (fd < 0 && !is_allowed(errno, allow_busy)) fail("%s %s: %s", what, path, strerror(errno));
    return fd;
}

static void op_adopt(int name, int allow_busy) {
    char path[512];
    int fd = open_name(name, O_RDWR, "open-for-write", allow_busy, path, sizeof path);
    if (fd < 0) return;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) fail("flock %s: %s", path, strerror(errno));
        if (close(fd) != 0) fail("close of %s (not adopted): %s", path, strerror(errno));
        return;
    }
    uint64_t length;
    uint8_t *data = read_all(fd, &length, "reading a file opened for writing");
    uint64_t first = 0;
    if (length >= 8) memcpy(&first, data, 8);
    uint32_t id = length >= 8 ? decode_word(first, 0) : 0;
    lock_model();
    struct identity *identity = id ? find(id) : NULL;
    if (!identity || identity->owner >= 0) {
        int owner = identity ? identity->owner : -1;
        uint64_t inode = identity ? identity->inode : 0;
        unlock_model();
        // Holding the file open for writing and its flock, nobody else can own it.
        if (owner >= 0) {
            struct stat info;
            fstat(fd, &info);
            fail("%s (inode %lu, %" PRIu64 " bytes): file %u is owned by worker %d of host %d (inode %" PRIu64 ") while this "
                 "worker has it open for writing and flocked", path, (unsigned long)info.st_ino, length, id, owner,
                 shared->worker_host[owner], inode);
        }
        // A file another worker of this host has just created and not yet claimed, or one that
        // lost its first word when its owner died: leave it alone.
        free(data);
        if (close(fd) != 0) fail("close of %s (not adopted): %s", path, strerror(errno));
        return;
    }
    if (identity->uncertain) {
        consistent_identity(data, length, path);
        if (!model_from_content(identity, data, length)) {
            unlock_model();
            free(data);
            if (close(fd) != 0) fail("close of %s (not adopted): %s", path, strerror(errno));
            return;
        }
    } else {
        compare_exact(identity, data, length, path);
    }
    own(identity, fd);
    unlock_model();
    note("  adopted file %u (%" PRIu64 " bytes)", id, length);
    free(data);
}

static void op_write(struct owned *o) {
    struct identity *identity = o->identity;
    uint64_t offset;
    uint64_t choice = below(8);
    if (choice < 3) offset = identity->length;
    else if (choice < 7 || !can_add_zero(identity)) offset = below(identity->length + 1);
    else offset = identity->length + 1 + below(64 << 10);
    uint64_t length = 1 + (below(2) ? below(4000) : below(max_length / 4));
    if (offset + length > max_length) {
        if (offset >= max_length) offset = below(max_length / 2);
        length = 1 + below(max_length - offset);
    }
    if (offset > identity->length && !can_add_zero(identity)) offset = identity->length;
    uint8_t *data = malloc(length);
    fill(data, identity->id, offset, length);
    note("write file %u: %" PRIu64 " bytes at %" PRIu64, identity->id, length, offset);
    full_write(o->fd, data, length, offset, "write");
    free(data);
    lock_model();
    model_write(identity, offset, length);
    unlock_model();
}

static void op_truncate(struct owned *o) {
    struct identity *identity = o->identity;
    uint64_t size = below(4) == 0 ? below(8) : below(identity->length + (64 << 10));
    if (size > identity->length && !can_add_zero(identity)) size = identity->length / 2;
    if (size > max_length) size = max_length;
    note("truncate file %u to %" PRIu64, identity->id, size);
    if (ftruncate(o->fd, (off_t)size) != 0) fail("ftruncate of file %u to %" PRIu64 ": %s", identity->id, size, strerror(errno));
    lock_model();
    model_truncate(identity, size);
    unlock_model();
    restore_header(o);
}

static void op_attributes(struct owned *o) {
    note("fchmod/futimens file %u", o->identity->id);
    if (fchmod(o->fd, below(2) ? 0600 : 0644) != 0) fail("fchmod of file %u: %s", o->identity->id, strerror(errno));
    struct timespec times[2] = {{(time_t)below(1u << 30), 0}, {(time_t)below(1u << 30), (long)below(1000000000)}};
    if (futimens(o->fd, below(2) ? times : NULL) != 0) fail("futimens of file %u: %s", o->identity->id, strerror(errno));
}

static void op_read(int name, int allow_busy) {
    char path[512];
    int fd = open_name(name, O_RDONLY, "read", allow_busy, path, sizeof path);
    if (fd < 0) return;
    // Which file and its model state now, from its first word, then everything.
    uint64_t first = 0;
    ssize_t got = pread(fd, &first, 8, 0);
    if (got < 0) fail("pread of %s: %s", path, strerror(errno));
    uint32_t id = got == 8 ? decode_word(first, 0) : 0;
    struct identity before = {0};
    if (id) {
        lock_model();
        struct identity *identity = find(id);
        if (!identity) fail("%s starts with the first word of file %u, which was never created", path, id);
        before = *identity;
        unlock_model();
    }
    uint64_t length;
    uint8_t *data = read_all(fd, &length, path);
    // The descriptor keeps its file whatever happens to the name: with the first word known,
    // every byte read must be that file's or zero (a worker of this host may have truncated it
    // in between, leaving no whole word to tell the file by).
    if (id) check_bytes_of(id, data, length, path);
    else consistent_identity(data, length, path);
    if (id) {
        lock_model();
        struct identity after = *find(id);
        unlock_model();
        if (after.owner >= 0 && shared->worker_host[after.owner] != host)
            fail("%s: file %u is owned by worker %d of host %d while this host has it open", path, id, after.owner,
                 shared->worker_host[after.owner]);
        if (before.owner < 0 && after.owner < 0 && before.epoch == after.epoch && !after.uncertain)
            compare_exact(&after, data, length, path);
    }
    free(data);
    if (close(fd) != 0) fail("close of %s opened read-only: %s", path, strerror(errno));
}

static void op_unlink(int name, int allow_busy) {
    char path[512];
    path_of(path, sizeof path, host, name);
    int result = unlink(path);
    note("unlink %s -> %s", path, result == 0 ? "ok" : strerror(errno));
    if (result != 0 && !is_allowed(errno, allow_busy)) fail("unlink %s: %s", path, strerror(errno));
}

static void op_rename(int from, int to, unsigned flags, int allow_busy) {
    char source[512], target[512];
    path_of(source, sizeof source, host, from);
    path_of(target, sizeof target, host, to);
    int result = (int)syscall(SYS_renameat2, AT_FDCWD, source, AT_FDCWD, target, flags);
    note("rename%s %s -> %s: %s", flags == RENAME_EXCHANGE ? "(exchange)" : flags == RENAME_NOREPLACE ? "(noreplace)" : "",
         source, target, result == 0 ? "ok" : strerror(errno));
    if (result != 0 && !is_allowed(errno, allow_busy)) fail("rename %s to %s (flags %u): %s", source, target, flags, strerror(errno));
}

static void op_stat(int name) {
    char path[512];
    path_of(path, sizeof path, host, name);
    struct stat info;
    int result = stat(path, &info);
    note("stat %s -> %s", path, result == 0 ? "ok" : strerror(errno));
    if (result != 0) {
        if (errno != ENOENT) fail("stat %s: %s", path, strerror(errno));
        return;
    }
    // A link count of 0 can show for a moment: the kernel drops it on the inode it resolved for
    // an unlink, and another host may have renamed another file to that name in between.
    if (!S_ISREG(info.st_mode) || info.st_nlink > 1) fail("stat %s: mode 0%o, %lu links", path, info.st_mode, (unsigned long)info.st_nlink);
}

static void op_list(void) {
    DIR *directory = opendir(mounts[host]);
    if (!directory) fail("opendir %s: %s", mounts[host], strerror(errno));
    int seen[MAX_NAMES] = {0};
    int count = 0;
    struct dirent *entry;
    errno = 0;
    while ((entry = readdir(directory))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        int index;
        char tail;
        if (sscanf(entry->d_name, "n%d%c", &index, &tail) != 1 || index < 0 || index >= name_count)
            fail("readdir of %s lists '%s', which no worker creates", mounts[host], entry->d_name);
        if (seen[index]++) fail("readdir of %s lists '%s' twice", mounts[host], entry->d_name);
        count++;
    }
    if (errno) fail("readdir %s: %s", mounts[host], strerror(errno));
    closedir(directory);
    note("list: %d names", count);
}

static int worker_main(int index, uint64_t worker_seed, long count, int allow_busy) {
    worker_index = index;
    host = shared->worker_host[index];
    random_state = worker_seed | 1;
    for (long done = 0; done < count; done++) {
        if (__atomic_load_n(&shared->failed, __ATOMIC_SEQ_CST)) return 1;
        pause_randomly();
        int name = (int)below((uint64_t)name_count);
        uint64_t choice = below(100);
        struct owned *o = owned_count ? &owned[below((uint64_t)owned_count)] : NULL;
        if (choice < 10) {
            if (owned_count < OWNED_PER_WORKER) op_create(name, allow_busy);
        } else if (choice < 17) {
            if (owned_count < OWNED_PER_WORKER) op_adopt(name, allow_busy);
        } else if (choice < 35) {
            if (o) op_write(o);
        } else if (choice < 40) {
            if (o) op_truncate(o);
        } else if (choice < 43) {
            if (o) {
                note("fsync file %u", o->identity->id);
                if (fsync(o->fd) != 0) fail("fsync of file %u: %s", o->identity->id, strerror(errno));
            }
        } else if (choice < 45) {
            if (o) op_attributes(o);
        } else if (choice < 55) {
            if (o) release((int)(o - owned));
        } else if (choice < 65) {
            op_read(name, allow_busy);
        } else if (choice < 73) {
            op_unlink(name, allow_busy);
        } else if (choice < 82) {
            op_rename(name, (int)below((uint64_t)name_count), 0, allow_busy);
        } else if (choice < 87) {
            op_rename(name, (int)below((uint64_t)name_count), RENAME_NOREPLACE, allow_busy);
        } else if (choice < 92) {
            op_rename(name, (int)below((uint64_t)name_count), RENAME_EXCHANGE, allow_busy);
        } else if (choice < 97) {
            op_stat(name);
        } else {
            op_list();
        }
        shared->operations[index]++;
    }
    while (owned_count > 0) release(owned_count - 1);
    return 0;
}

// ---- the parent ------------------------------------------------------------------------------

static void map_shared(void) {
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); exit(1); }
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&shared->mutex, &attributes);
}

static void load_model(void) {
    FILE *file = fopen(model_path, "r");
    if (!file) return;
    char line[4096];
    while (fgets(line, sizeof line, file)) {
        if (!strncmp(line, "next ", 5)) { shared->next_id = (uint32_t)strtoul(line + 5, NULL, 10); continue; }
        if (!strncmp(line, "killed", 6)) { shared->uncertain_allowed = 1; continue; }
        char *cursor = line;
        uint32_t id = (uint32_t)strtoul(cursor, &cursor, 10);
        if (!id) continue;
        struct identity *identity = insert(id);
        identity->uncertain = (uint8_t)strtoul(cursor, &cursor, 10);
        identity->length = strtoull(cursor, &cursor, 10);
        identity->zero_count = (uint32_t)strtoul(cursor, &cursor, 10);
        if (identity->zero_count > MAX_ZEROS) { fprintf(stderr, "nscheck: bad model line: %s", line); exit(2); }
        for (uint32_t z = 0; z < identity->zero_count; z++) {
            identity->zeros[z].start = strtoull(cursor, &cursor, 10);
            identity->zeros[z].end = strtoull(cursor, &cursor, 10);
        }
    }
    fclose(file);
}

/// Saves the identities the verification found on the volume.
static void save_model(void) {
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", model_path);
    FILE *file = fopen(temporary, "w");
    if (!file) { perror(temporary); exit(1); }
    fprintf(file, "next %u\n", shared->next_id);
    if (shared->killed_host >= 0) fprintf(file, "killed\n");
    for (uint32_t i = 0; i < TABLE_SIZE; i++) {
        struct identity *identity = &shared->table[i];
        if (!identity->id || identity->removed) continue;
        fprintf(file, "%u %u %" PRIu64 " %u", identity->id, identity->uncertain, identity->length, identity->zero_count);
        for (uint32_t z = 0; z < identity->zero_count; z++) fprintf(file, " %" PRIu64 " %" PRIu64, identity->zeros[z].start, identity->zeros[z].end);
        fprintf(file, "\n");
    }
    if (fclose(file) != 0 || rename(temporary, model_path) != 0) { perror(model_path); exit(1); }
}

/// Checks every file through every mount: a distinct identity each, exactly as modelled
/// (consistent only where uncertain), the same bytes through every mount, and statfs agreeing.
/// Identities found nowhere are dropped from the model. Returns the number of files.
static int verify_all(void) {
    uint32_t found[MAX_NAMES] = {0};
    int files = 0;
    for (int h = 0; h < host_count; h++) {
        host = h;
        for (int name = 0; name < name_count; name++) {
            char path[512];
            path_of(path, sizeof path, h, name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            // A host may hold a file for a moment after its workers closed it (RELEASE comes
            // after close, and a lock taken for a retried open is kept up to 2 s).
            for (int wait = 0; fd < 0 && errno == EBUSY && wait < 100; wait++) {
                usleep(50000);
                fd = open(path, O_RDONLY | O_CLOEXEC);
            }
            if (fd < 0) {
                if (errno != ENOENT) fail("verify: open %s: %s", path, strerror(errno));
                if (h > 0 && found[name]) fail("verify: %s is missing on host %d but exists on host 0", path, h);
                continue;
            }
            uint64_t length;
            uint8_t *data = read_all(fd, &length, path);
            struct stat info;
            if (fstat(fd, &info) != 0) fail("verify: fstat %s: %s", path, strerror(errno));
            if (info.st_size > 0 && info.st_blocks == 0) fail("verify: %s has %lld bytes in 0 blocks", path, (long long)info.st_size);
            if (close(fd) != 0) fail("verify: close %s: %s", path, strerror(errno));
            uint32_t id = consistent_identity(data, length, path);
            uint64_t first = 0;
            if (length >= 8) memcpy(&first, data, 8);
            struct identity *identity = id ? find(id) : NULL;
            if (shared->uncertain_allowed && h == 0 && (!identity || (identity->uncertain && decode_word(first, 0) != id))) {
                // Left by a killed host before it wrote the file's first word: remove it.
                if (unlink(path) != 0) fail("verify: unlink %s (left by a killed host): %s", path, strerror(errno));
                if (!quiet) printf("removed %s: %" PRIu64 " bytes left by a killed host without a first word\n", path, length);
                free(data);
                continue;
            }
            if (!identity) fail("verify: %s holds no known file (%" PRIu64 " bytes, file %u)", path, length, id);
            if (identity->owner >= 0 && !identity->uncertain) fail("verify: file %u is still owned by worker %d", id, identity->owner);
            if (!identity->uncertain) {
                if (decode_word(first, 0) != id) fail("verify: %s (file %u) lost its first word", path, id);
                compare_exact(identity, data, length, path);
            }
            if (h == 0) {
                for (int other = 0; other < name; other++)
                    if (found[other] == id) fail("verify: file %u is named both n%02d and n%02d", id, other, name);
                found[name] = id;
                files++;
            } else if (found[name] != id) {
                fail("verify: %s is file %u on host %d but file %u on host 0", path, id, h, found[name]);
            }
            if (identity->uncertain && h == 0) {
                // Its owner died: what survived is the file now (if the model can hold it).
                model_from_content(identity, data, length);
                identity->owner = -1;
            }
            free(data);
        }
        int listed = 0;
        DIR *directory = opendir(mounts[h]);
        if (!directory) fail("verify: opendir %s: %s", mounts[h], strerror(errno));
        struct dirent *entry;
        while ((entry = readdir(directory))) if (entry->d_name[0] != '.') listed++;
        closedir(directory);
        if (listed != files) fail("verify: %s lists %d files, %d were read", mounts[h], listed, files);
        struct statvfs space;
        if (statvfs(mounts[h], &space) != 0) fail("verify: statvfs %s: %s", mounts[h], strerror(errno));
        if (space.f_ffree != (fsfilcnt_t)(MAX_FILES - files))
            fail("verify: statfs of %s reports %lu free file slots with %d files", mounts[h], (unsigned long)space.f_ffree, files);
    }
    for (uint32_t i = 0; i < TABLE_SIZE; i++) {
        struct identity *identity = &shared->table[i];
        if (!identity->id) continue;
        int alive = 0;
        for (int name = 0; name < name_count; name++) if (found[name] == identity->id) alive = 1;
        identity->removed = !alive;
    }
    return files;
}

static void usage(void) {
    fprintf(stderr, "usage: nscheck run|verify|churn|cycles [-m model] [-S seed] [-N ops] [-p procs] [-n names] "
                    "[-L max_len] [-D pause_us] [-k kill_ms -P pid,...] [-q] MOUNT...\n");
    exit(2);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static pid_t daemons[MAX_HOSTS];

/// Starts `count` workers per host; with `kill_ms` > 0 kills one host after about that long.
/// Returns 0, 1 on a failure, or 3 when a host was killed.
static int run_workers(long total, int kill_ms, int (*body)(int, uint64_t, long, int)) {
    int workers = processes * host_count;
    if (workers > MAX_WORKERS) usage();
    pid_t pids[MAX_WORKERS];
    pid_t groups[MAX_HOSTS] = {0};
    for (int w = 0; w < workers; w++) {
        shared->worker_host[w] = w % host_count;
        long share = total / workers + (w < total % workers ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); exit(1); }
        if (pid == 0) {
            setpgid(0, groups[w % host_count]);
            _exit(body(w, seed * 1000003u + (uint64_t)w * 7919u + 1, share, host_count > 1));
        }
        setpgid(pid, groups[w % host_count]);
        if (!groups[w % host_count]) groups[w % host_count] = pid;
        pids[w] = pid;
    }
    int killed_host = -1;
    double kill_at = now_seconds() + (kill_ms > 0 ? (double)(kill_ms / 2 + (int)below((uint64_t)kill_ms)) / 1000.0 : 1e18);
    int status = 0;
    int running = workers;
    while (running > 0) {
        if (killed_host < 0 && now_seconds() >= kill_at) {
            killed_host = (int)below((uint64_t)host_count);
            int with_workers = (int)below(2);
            fprintf(stderr, "nscheck: killing host %d (daemon %d%s)\n", killed_host, (int)daemons[killed_host],
                    with_workers ? " and its workers" : "");
            __atomic_store_n(&shared->killed_host, killed_host, __ATOMIC_SEQ_CST);
            if (with_workers) kill(-groups[killed_host], SIGKILL);
            if (daemons[killed_host] > 0) kill(daemons[killed_host], SIGKILL);
        }
        int child_status;
        pid_t pid = waitpid(-1, &child_status, killed_host < 0 && kill_ms > 0 ? WNOHANG : 0);
        if (pid == 0) { usleep(10000); continue; }
        if (pid < 0) { if (errno == EINTR) continue; break; }
        running--;
        int w = 0;
        while (w < workers && pids[w] != pid) w++;
        int lost = killed_host >= 0 && w < workers && shared->worker_host[w] == killed_host;
        if (lost) {
            // Its files may keep any prefix of what it wrote since its last fsync or close.
            lock_model();
            for (uint32_t i = 0; i < TABLE_SIZE; i++) {
                struct identity *identity = &shared->table[i];
                if (identity->id && identity->owner == w) {
                    identity->uncertain = 1;
                    identity->owner = -1;
                    identity->epoch++;
                }
            }
            unlock_model();
            continue;
        }
        if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) {
            status = 1;
            if (WIFSIGNALED(child_status)) fprintf(stderr, "nscheck: worker %d died of signal %d\n", w, WTERMSIG(child_status));
            __atomic_store_n(&shared->failed, 1, __ATOMIC_SEQ_CST);
        }
    }
    if (status == 0 && killed_host >= 0) return 3;
    return status;
}

static int run_worker(int index, uint64_t worker_seed, long count, int allow_busy) {
    return worker_main(index, worker_seed, count, allow_busy);
}

// ---- churn and cycles ------------------------------------------------------------------------

static int churn_worker(int index, uint64_t worker_seed, long count, int allow_busy) {
    (void)allow_busy;
    worker_index = index;
    random_state = worker_seed | 1;
    uint8_t *data = malloc(1 << 20);
    for (long i = 0; i < count; i++) {
        char from[512], to[512];
        path_of(from, sizeof from, 0, (int)below((uint64_t)name_count));
        path_of(to, sizeof to, 0, (int)below((uint64_t)name_count));
        int fd = open(from, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) fail("churn: open %s: %s", from, strerror(errno));
        uint64_t sizes[] = {100, 5000, 1u << 20};
        uint64_t length = sizes[below(3)];
        fill(data, (uint32_t)(index + 1), 0, length);
        full_write(fd, data, length, 0, from);
        if (close(fd) != 0) fail("churn: close %s: %s", from, strerror(errno));
        if (rename(from, to) != 0 && errno != ENOENT) fail("churn: rename %s to %s: %s", from, to, strerror(errno));
    }
    free(data);
    return 0;
}

static int cycles_worker(int index, uint64_t worker_seed, long count, int allow_busy) {
    (void)worker_seed;
    (void)allow_busy;
    worker_index = index;
    char path[512];
    snprintf(path, sizeof path, "%s/cycle-%d", mounts[0], index);
    for (long i = 0; i < count; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) fail("cycle %ld: create %s: %s", i, path, strerror(errno));
        if (i % 4 == 0 && write(fd, "x", 1) != 1) fail("cycle %ld: write %s: %s", i, path, strerror(errno));
        if (close(fd) != 0) fail("cycle %ld: close %s: %s", i, path, strerror(errno));
        if (unlink(path) != 0) fail("cycle %ld: unlink %s: %s", i, path, strerror(errno));
    }
    return 0;
}

/// Creates files until the volume holds 255, then removes them again.
static void fill_and_empty(void) {
    DIR *directory = opendir(mounts[0]);
    if (!directory) fail("opendir %s: %s", mounts[0], strerror(errno));
    int existing = 0;
    struct dirent *entry;
    while ((entry = readdir(directory))) if (entry->d_name[0] != '.') existing++;
    closedir(directory);
    char path[512];
    for (int i = 0; i < MAX_FILES - existing; i++) {
        snprintf(path, sizeof path, "%s/fill-%03d", mounts[0], i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) fail("create %d of %d (with %d files there): %s: %s", i + 1, MAX_FILES - existing, existing, path, strerror(errno));
        if (close(fd) != 0) fail("close %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/one-too-many", mounts[0]);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != ENOSPC) fail("the 256th file: %s", fd >= 0 ? "created" : strerror(errno));
    for (int i = 0; i < MAX_FILES - existing; i++) {
        snprintf(path, sizeof path, "%s/fill-%03d", mounts[0], i);
        if (unlink(path) != 0) fail("unlink %s: %s", path, strerror(errno));
    }
    if (!quiet) printf("filled the volume to %d files and emptied it again\n", MAX_FILES);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    int kill_ms = 0;
    seed = (uint64_t)time(NULL);
    int option;
    optind = 2;
    while ((option = getopt(argc, argv, "m:S:N:p:n:L:D:k:P:q")) != -1) {
        switch (option) {
        case 'm': model_path = optarg; break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        case 'N': operations = strtol(optarg, NULL, 10); break;
        case 'p': processes = atoi(optarg); break;
        case 'n': name_count = atoi(optarg); break;
        case 'L': max_length = strtoull(optarg, NULL, 10); break;
        case 'D': pause_us = atoi(optarg); break;
        case 'k': kill_ms = atoi(optarg); break;
        case 'P': {
            char *cursor = optarg;
            for (int h = 0; h < MAX_HOSTS && *cursor; h++) {
                daemons[h] = (pid_t)strtol(cursor, &cursor, 10);
                if (*cursor == ',') cursor++;
            }
            break;
        }
        case 'q': quiet = 1; break;
        default: usage();
        }
    }
    for (int i = optind; i < argc && host_count < MAX_HOSTS; i++) mounts[host_count++] = argv[i];
    if (host_count == 0 || processes < 1 || name_count < 2 || name_count > MAX_NAMES || max_length < 64) usage();
    random_state = seed | 1;
    map_shared();
    shared->killed_host = -1;
    sync_before_release = kill_ms > 0;
    double started = now_seconds();
    if (!strcmp(mode, "churn") || !strcmp(mode, "cycles")) {
        host_count = 1;
        int status = run_workers(operations, 0, !strcmp(mode, "churn") ? churn_worker : cycles_worker);
        if (status != 0) return status;
        if (!strcmp(mode, "cycles")) fill_and_empty();
        if (!quiet) printf("OK %s: %ld in %.1f s\n", mode, operations, now_seconds() - started);
        return 0;
    }
    if (!model_path || (strcmp(mode, "run") && strcmp(mode, "verify"))) usage();
    load_model();
    int files = verify_all();
    if (!strcmp(mode, "verify")) {
        save_model();
        if (!quiet) printf("OK verify: %d files as modelled through %d mounts\n", files, host_count);
        return 0;
    }
    int status = run_workers(operations, kill_ms, run_worker);
    uint64_t done = 0;
    for (int w = 0; w < processes * host_count; w++) done += shared->operations[w];
    if (status == 3) {
        // The killed host must come back (its journal replayed) before the files can be checked.
        save_model();
        printf("KILLED after %" PRIu64 " operations (seed %" PRIu64 "): verify once the host is back\n", done, seed);
        return 3;
    }
    if (status != 0) {
        fprintf(stderr, "nscheck: run failed (seed %" PRIu64 ")\n", seed);
        return status;
    }
    worker_index = -1;
    files = verify_all();
    save_model();
    printf("OK %" PRIu64 " operations by %d workers on %d hosts in %.1f s; %d files as modelled (seed %" PRIu64 ")\n",
           done, processes * host_count, host_count, now_seconds() - started, files, seed);
    return 0;
}
