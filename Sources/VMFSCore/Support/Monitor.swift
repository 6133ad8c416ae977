internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A mutex with a condition variable, for threads that wait for state to change.
///
/// `Synchronization.Mutex` has no condition variable; this wraps the pthread pair. The state is
/// only reachable inside ``withLock(_:)`` and ``wait(until:_:)``.
final class Monitor<State>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State

    init(_ initial: State) {
        state = initial
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Runs `body` with exclusive access to the state and wakes all waiters afterwards.
    @discardableResult
    func withLock<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return try body(&state)
    }

    /// Waits until `predicate` holds (or the deadline passes), then runs `body` under the lock.
    ///
    /// - Parameter deadline: A monotonic-clock deadline in nanoseconds, or `nil` to wait forever.
    /// - Returns: `nil` when the deadline passed before the predicate held.
    func wait<T>(until deadline: UInt64? = nil, for predicate: (State) -> Bool, _ body: (inout State) -> T) -> T? {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        while !predicate(state) {
            if let deadline {
                let now = Clock.monotonicNanoseconds
                if now >= deadline { return nil }
                var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
                pthread_cond_timedwait(condition, mutex, &ts)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        return body(&state)
    }
}

/// A set of keys held exclusively by threads of this process; other threads wait.
final class KeyedLocks<Key: Hashable & Sendable>: Sendable {
    private let held = Monitor<Set<Key>>([])

    func lock(_ key: Key) {
        _ = held.wait(for: { !$0.contains(key) }) { $0.insert(key) }
    }

    func unlock(_ key: Key) {
        held.withLock { $0.remove(key) }
    }

    /// Takes `key` if no thread holds it; returns whether it did.
    func tryLock(_ key: Key) -> Bool {
        held.withLock { $0.insert(key).inserted }
    }

    func withLock<T, E: Error>(_ key: Key, _ body: () throws(E) -> T) throws(E) -> T {
        lock(key)
        defer { unlock(key) }
        return try body()
    }
}
