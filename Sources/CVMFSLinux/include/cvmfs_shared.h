#ifndef CVMFS_SHARED_H
#define CVMFS_SHARED_H

#include <stdint.h>

// ---- memory shared between processes ------------------------------------------------------
// Index words of rings in a shared memfd: another process reads and writes them, so the
// compiler must neither cache nor reorder the accesses (Swift has no atomics on raw memory).

/// Loads a 32-bit word with acquire ordering.
static inline uint32_t cvmfs_shared_load_acquire(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }
/// Stores a 32-bit word with release ordering.
static inline void cvmfs_shared_store_release(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }
/// A full barrier: orders an earlier store before a later load (the wake-up handshake).
static inline void cvmfs_shared_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/// Seals a memfd's size (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): the process it is passed to
/// cannot truncate it under the mapping of this one (a SIGBUS here). 0 or -errno.
int cvmfs_memfd_seal_size(int fd);
/// 1 when the memfd's size is sealed against shrinking and growing, 0 when not, -errno on failure.
int cvmfs_memfd_size_is_sealed(int fd);

#endif
