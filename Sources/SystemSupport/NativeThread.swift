internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A pthread running a closure: for loops that block in system calls (socket readers, watchdogs),
/// which must not run on Swift's cooperative pool.
public final class NativeThread: Sendable {
    private let handle: Mutex<pthread_t?>

    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts `body` on a new thread named `name` (15 bytes are kept).
    ///
    /// - Throws: ``SystemError`` when the thread cannot be created.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            cvmfs_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: result, subject: name)
        }
        handle = Mutex(thread)
    }

    /// Starts a thread nobody joins.
    public static func detach(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let thread = try NativeThread(name: name, body)
        thread.handle.withLock { h in
            if let t = h { pthread_detach(t) }
            h = nil
        }
    }

    /// Waits for the thread to finish (once; later calls return at once).
    public func join() {
        let thread = handle.withLock { h -> pthread_t? in
            defer { h = nil }
            return h
        }
        if let thread { pthread_join(thread, nil) }
    }
}
