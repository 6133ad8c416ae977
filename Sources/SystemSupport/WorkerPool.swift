internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A fixed set of threads for blocking work: a VMM's device requests (off the vCPU threads), the
/// agent's disk channels.
///
/// Work items start in submission order as threads become free; several run at once, so a disk
/// with many requests in flight keeps its backend busy. ``shutdown()`` lets queued work finish
/// and joins the threads.
public final class WorkerPool: Sendable {
    fileprivate struct State {
        var queue: [@Sendable () -> Void] = []
        var head = 0
        var stopping = false
    }

    private let state = Monitor(State())
    private let threads: [pthread_t]

    /// Starts `count` threads named `name-N`.
    public init(threads count: Int, name: String) throws(SystemError) {
        var started: [pthread_t] = []
        let state = self.state
        for index in 0..<max(1, count) {
            let worker = Unmanaged.passRetained(IOWorker(state: state, name: "\(name)-\(index)")).toOpaque()
            var thread = pthread_t()
            let result = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<IOWorker>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, worker)
            guard result == 0 else {
                Unmanaged<IOWorker>.fromOpaque(worker).release()
                state.withLock { $0.stopping = true }
                for thread in started { pthread_join(thread, nil) }
                throw SystemError("pthread_create", errno: result, subject: "\(name) thread \(index)")
            }
            started.append(thread)
        }
        threads = started
    }

    /// Queues `work`; it runs on one of the pool's threads.
    public func submit(_ work: @escaping @Sendable () -> Void) {
        // One item wakes one idle worker (a busy one finds it when it comes back). Waking all of
        // them put every idle thread (16 in the agent, 8 in a VMM) through a wake-up per request.
        state.withLock(waking: .one) { $0.queue.append(work) }
    }

    /// Runs what is queued, then stops and joins every thread. Later submissions are dropped.
    public func shutdown() {
        let first = state.withLock { s -> Bool in
            defer { s.stopping = true }
            return !s.stopping
        }
        guard first else { return }
        for thread in threads { pthread_join(thread, nil) }
    }

    deinit { shutdown() }

    fileprivate final class IOWorker: Sendable {
        let state: Monitor<State>
        let name: String

        init(state: Monitor<State>, name: String) {
            self.state = state
            self.name = name
        }

        func run() {
            cvmfs_set_thread_name(name)
            while true {
                // Taking an item makes nothing true for the other workers: wake nobody.
                let work = state.wait(for: { $0.head < $0.queue.count || $0.stopping }, waking: .none) { s -> (@Sendable () -> Void)? in
                    guard s.head < s.queue.count else { return nil }
                    let item = s.queue[s.head]
                    s.head += 1
                    if s.head > 1024 && s.head * 2 > s.queue.count {
                        s.queue.removeFirst(s.head)
                        s.head = 0
                    }
                    return item
                }
                guard let work, let item = work else { return }
                item()
            }
        }
    }
}
