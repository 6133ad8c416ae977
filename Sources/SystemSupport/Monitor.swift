#if canImport(Glibc)
internal import Glibc
#endif

/// A mutex with a condition variable, for threads that wait for shared state to change.
///
/// `Synchronization.Mutex` has no condition variable; this wraps the pthread pair, with waits on
/// the monotonic clock. The state is reachable only inside ``withLock(waking:_:)`` and
/// ``wait(until:for:waking:_:)``; by default every change wakes every waiter.
public final class Monitor<State>: @unchecked Sendable {
    /// Whom a change wakes.
    public enum Waking: Sendable {
        /// Every waiter: waiters wait for different things.
        case all
        /// One waiter: every waiter waits for the same thing and one can consume the change
        /// (a work queue). Waking all of them would only put all but one back to sleep.
        case one
        /// Nobody: the change makes no waiter's predicate true.
        case none
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State

    /// Creates a monitor guarding `initial`.
    public init(_ initial: State) {
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

    /// Runs `body` with exclusive access to the state, then wakes `waking` waiters (all by default).
    @discardableResult
    public func withLock<T, E: Error>(waking: Waking = .all, _ body: (inout State) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer {
            wake(waking)
            pthread_mutex_unlock(mutex)
        }
        return try body(&state)
    }

    private func wake(_ waking: Waking) {
        switch waking {
        case .all: pthread_cond_broadcast(condition)
        case .one: pthread_cond_signal(condition)
        case .none: break
        }
    }

    /// Waits until `predicate` holds or `deadline` passes, then runs `body` under the lock and
    /// wakes `waking` waiters (all by default).
    ///
    /// - Parameter deadline: A `CLOCK_MONOTONIC` deadline in nanoseconds; `nil` waits forever.
    /// - Returns: `nil` when the deadline passed before the predicate held.
    public func wait<T>(until deadline: UInt64? = nil, for predicate: (State) -> Bool, waking: Waking = .all,
                        _ body: (inout State) -> T) -> T? {
        pthread_mutex_lock(mutex)
        defer {
            wake(waking)
            pthread_mutex_unlock(mutex)
        }
        while !predicate(state) {
            if let deadline {
                if MonotonicClock.nanoseconds >= deadline { return nil }
                var limit = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
                pthread_cond_timedwait(condition, mutex, &limit)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        return body(&state)
    }
}
