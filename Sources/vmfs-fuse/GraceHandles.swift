import Synchronization
internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// File locks kept for a moment after an OPEN was answered `ESTALE`.
///
/// With the writeback cache, an OPEN of a kernel inode made before another host changed the
/// file is refused with `ESTALE` (the inode's size is stale and the kernel will not take a new
/// one; see ``InodeTable``), and the kernel then looks the name up again and retries once. If
/// this host dropped the file's lock in between, a busy writer on another host could change the
/// file again before the retry and make it fail too. So the refused OPEN keeps its handle, and
/// with it the lock, for up to two seconds: the retried lookup sees the file held and gets the
/// new instance, the retried OPEN succeeds and takes over, and the kept handle is closed.
/// Handles nobody took over are closed by ``FileSystem``'s janitor when they expire.
final class GraceHandles: Sendable {
    struct Entry: Sendable {
        let handle: FileHandle
        let writable: Bool
        let deadline: UInt64
    }

    static let lifetimeNanoseconds: UInt64 = 2_000_000_000
    /// How long a refused process's retry is waited for: longer than a kept handle lives, so
    /// that a retry slowed down by a loaded machine still gets `EBUSY` rather than `ESTALE`.
    static let retryLifetimeNanoseconds: UInt64 = 10_000_000_000
    private let entries = Mutex<[Int: Entry]>([:])
    /// A refused request the kernel retries from the same process, looking the name up again first.
    private struct Retry {
        var writable: Bool
        var deadline: UInt64
        /// The retry's lookup came (and locked the file it found).
        var lookedUp = false
    }

    /// Callers (process ids) whose OPEN or GETATTR was refused as stale.
    private let retries = Mutex<[Int32: Retry]>([:])

    /// Notes that the kernel retries a request of process `pid` refused as stale; `writable`:
    /// the access an OPEN asked for. Returns false when one is pending already: this refusal
    /// is of the retry itself.
    func expectRetry(pid: Int32, writable: Bool) -> Bool {
        let now = Self.now
        return retries.withLock { retries in
            retries = retries.filter { $0.value.deadline > now }
            if retries.removeValue(forKey: pid) != nil { return false }
            retries[pid] = Retry(writable: writable, deadline: now + Self.retryLifetimeNanoseconds)
            return true
        }
    }

    /// The access of the request process `pid` is retrying, when this is the retry's lookup.
    func retryLookup(pid: Int32) -> Bool? {
        let now = Self.now
        return retries.withLock { retries in
            guard let retry = retries[pid], retry.deadline > now, !retry.lookedUp else { return nil }
            retries[pid]?.lookedUp = true
            return retry.writable
        }
    }

    /// Process `pid` needs no retry any more: its OPEN succeeded.
    func retryDone(pid: Int32) {
        retries.withLock { _ = $0.removeValue(forKey: pid) }
    }

    /// Keeps `handle` of `slot` until it is taken over or expires. A handle already kept for the
    /// slot is returned: the caller closes it.
    func keep(_ handle: FileHandle, slot: Int, writable: Bool) -> Entry? {
        let entry = Entry(handle: handle, writable: writable, deadline: Self.now + Self.lifetimeNanoseconds)
        return entries.withLock { $0.updateValue(entry, forKey: slot) }
    }

    /// The handle kept for `slot`, no longer kept.
    func take(slot: Int) -> Entry? {
        entries.withLock { $0.removeValue(forKey: slot) }
    }

    /// Slots whose kept handle has expired.
    func expiredSlots() -> [Int] {
        let now = Self.now
        return entries.withLock { $0.filter { $0.value.deadline <= now }.map(\.key) }
    }

    /// The handle kept for `slot` if it has expired, no longer kept.
    func takeExpired(slot: Int) -> Entry? {
        let now = Self.now
        return entries.withLock { entries in
            guard let entry = entries[slot], entry.deadline <= now else { return nil }
            entries[slot] = nil
            return entry
        }
    }

    /// Every kept handle (at unmount), no longer kept.
    func takeAll() -> [(slot: Int, entry: Entry)] {
        entries.withLock { entries in
            let all = entries.map { (slot: $0.key, entry: $0.value) }
            entries.removeAll()
            return all
        }
    }

    /// Monotonic time, ns.
    static var now: UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
