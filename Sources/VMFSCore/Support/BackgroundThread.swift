internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A pthread running a closure, for the heartbeat, commit and recovery loops.
///
/// These loops block in system calls and sleep; they must not run on Swift's cooperative pool.
/// A thread made with ``init(name:_:)`` must be joined (``join()``); work nobody waits for (a
/// recovery, orphan cleanup, a rejoin) goes to ``detach(name:_:)``, whose thread frees its stack
/// when it ends instead of keeping it mapped for the life of the process.
final class BackgroundThread: @unchecked Sendable {
    private var thread: pthread_t?

    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts `body` on a new thread, to be joined.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        thread = Self.start(name: name, body)
    }

    /// Starts `body` on a detached thread that nobody joins.
    static func detach(name: String, _ body: @escaping @Sendable () -> Void) {
        if let thread = start(name: name, body) { pthread_detach(thread) }
    }

    /// Starts the thread; without one (`pthread_create` failed) runs `body` inline, so that the
    /// work is not silently lost, and returns `nil`.
    private static func start(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t? {
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            cvmfs_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            body()
            return nil
        }
        return handle
    }

    /// Waits for the thread to finish.
    func join() {
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }
}
