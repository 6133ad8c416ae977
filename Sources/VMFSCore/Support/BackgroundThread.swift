internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A pthread running a closure, for the heartbeat, commit and recovery loops.
///
/// These loops block in system calls and sleep; they must not run on Swift's cooperative pool.
/// A thread is joined with ``join()``; one whose object goes away unjoined (a fire-and-forget
/// recovery, orphan cleanup or rejoin) is detached then, so that its stack is freed when it
/// ends instead of staying mapped for the life of the process.
final class BackgroundThread: @unchecked Sendable {
    private var thread: pthread_t?
    private let body: @Sendable () -> Void

    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts `body` on a new thread.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            cvmfs_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        if result == 0 {
            thread = handle
        } else {
            Unmanaged<Box>.fromOpaque(box).release()
            // No thread: run inline so the work is not silently lost.
            body()
        }
    }

    /// Waits for the thread to finish.
    func join() {
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }

    deinit {
        if let thread { pthread_detach(thread) }
    }
}
