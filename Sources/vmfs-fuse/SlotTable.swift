import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// What this mount has open of each file slot, and the per-file locks of the daemon.
///
/// The counts decide the kernel caching of a file: its page cache is kept across an OPEN only
/// while this host held the file's on-disk lock without a gap (another open handle was alive),
/// and its attributes are cached only while this host has it open for writing (exclusive lock).
/// OPEN and RELEASE of one slot are serialized, so a count and the lock state agree.
final class SlotTable: Sendable {
    /// Open handles of one slot.
    struct Counts: Equatable {
        var handles = 0
        var writers = 0
    }

    private let counts: Mutex<[Counts]>
    private let openCloseLocks: [SlotMutex]
    private let writeLocks: [ReadWriteLock]

    init(slots: Int) {
        counts = Mutex(Array(repeating: Counts(), count: slots))
        openCloseLocks = (0..<slots).map { _ in SlotMutex() }
        writeLocks = (0..<slots).map { _ in ReadWriteLock() }
    }

    /// The open handles of `slot` now.
    func counts(_ slot: Int) -> Counts { counts.withLock { $0[slot] } }

    /// Runs `body` while no OPEN or RELEASE of `slot` runs on another thread.
    func withOpenCloseLock<R, E: Error>(_ slot: Int, _ body: () throws(E) -> R) throws(E) -> R {
        try openCloseLocks[slot].withLock(body)
    }

    /// Counts a new handle of `slot`.
    func opened(_ slot: Int, writable: Bool) {
        counts.withLock { counts in
            counts[slot].handles += 1
            if writable { counts[slot].writers += 1 }
        }
    }

    /// Stops counting a handle of `slot`; returns what is left.
    @discardableResult
    func closed(_ slot: Int, writable: Bool) -> Counts {
        counts.withLock { counts in
            counts[slot].handles = max(0, counts[slot].handles - 1)
            if writable { counts[slot].writers = max(0, counts[slot].writers - 1) }
            return counts[slot]
        }
    }

    /// Runs a write of `slot`. Writes that are not 4 KiB-aligned in offset and length are
    /// read-modify-writes of their edge sectors on the `O_DIRECT` device, so they run alone;
    /// aligned writes run side by side.
    func withWriteLock<R, E: Error>(_ slot: Int, exclusive: Bool, _ body: () throws(E) -> R) throws(E) -> R {
        try writeLocks[slot].withLock(exclusive: exclusive, body)
    }
}

/// A pthread mutex usable from any thread.
final class SlotMutex: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A pthread reader-writer lock.
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() { pthread_rwlock_init(lock, nil) }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func withLock<R, E: Error>(exclusive: Bool, _ body: () throws(E) -> R) throws(E) -> R {
        if exclusive { pthread_rwlock_wrlock(lock) } else { pthread_rwlock_rdlock(lock) }
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
