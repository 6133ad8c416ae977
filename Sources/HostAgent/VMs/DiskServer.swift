public import Hypervisor
public import SystemSupport
public import VMXProtocol
internal import Synchronization

/// Serves one VM disk to its VMM over a disk channel (`docs/VMX-PROTOCOL.md`).
///
/// Every request is checked before anything is done: operation, that `[offset, offset + length)`
/// lies on the disk, and that its data lies in the shared window. A VMM compromised by its guest
/// can therefore read and write its own disk and nothing else. Requests run on the agent's
/// worker pool, several at once.
public final class DiskServer: Sendable {
    /// Counters of what the VM did to this disk, for statistics and metrics.
    public struct Counters: Sendable, Equatable {
        public var reads: UInt64 = 0
        public var writes: UInt64 = 0
        public var flushes: UInt64 = 0
        public var discards: UInt64 = 0
        public var bytesRead: UInt64 = 0
        public var bytesWritten: UInt64 = 0
        public var rejected: UInt64 = 0
        public var errors: UInt64 = 0
    }

    public let backend: any DiskBackend
    public let window: SharedMemoryRegion
    private let socket: RecordSocket
    /// The VMM's end of the channel: handed over in a control message, then closed here.
    public let peerSocket: RecordSocket
    private let pool: WorkerPool
    private let counters = Mutex(Counters())
    private let stopped = Atomic<Bool>(false)

    /// Creates the channel and its window (`windowBytes`, a multiple of 1 MiB).
    public init(backend: any DiskBackend, windowBytes: Int, pool: WorkerPool, name: String) throws(SystemError) {
        self.backend = backend
        self.pool = pool
        window = try SharedMemoryRegion(creating: "disk-window-\(name)", byteCount: windowBytes)
        (socket, peerSocket) = try RecordSocket.pair()
    }

    /// What the VM did so far.
    public var statistics: Counters { counters.withLock { $0 } }

    /// Starts serving requests on a thread of its own.
    public func start() throws(SystemError) {
        try NativeThread.detach(name: "hostd-disk") { [self] in serve() }
    }

    /// Stops serving: the VMM's requests in flight get no completion (its end sees the channel
    /// close and waits for a new one).
    public func stop() {
        stopped.store(true, ordering: .releasing)
        socket.shutdown()
    }

    private func serve() {
        while !stopped.load(ordering: .acquiring) {
            guard let record = try? socket.receive(maximum: DiskRequest.size) else { break }
            switch DiskRequest.decode(record[...]) {
            case .invalid(let tag, _):
                counters.withLock { $0.rejected += 1 }
                if let tag { reply(DiskCompletion(tag: tag, status: .invalid)) }
            case .request(let request):
                if let status = check(request) {
                    counters.withLock { $0.rejected += 1 }
                    reply(DiskCompletion(tag: request.tag, status: status))
                } else {
                    pool.submit { [self] in reply(execute(request)) }
                }
            }
        }
    }

    private func reply(_ completion: DiskCompletion) {
        try? socket.send(completion.encoded)
    }

    /// Why `request` cannot be served, or nil when it can.
    func check(_ request: DiskRequest) -> DiskCompletionStatus? {
        let size = backend.byteCount
        switch request.operation {
        case .flush:
            return nil
        case .read, .write:
            guard request.length > 0, window.pointer(at: request.windowOffset, count: request.length) != nil else { return .invalid }
        case .discard, .writeZeroes, .writeZeroesKeepAllocated:
            break
        }
        guard request.offset <= size, request.length <= size - request.offset else { return .outOfRange }
        if request.operation != .read && backend.isReadOnly { return .ioError }
        return nil
    }

    private func execute(_ request: DiskRequest) -> DiskCompletion {
        do throws(DiskError) {
            switch request.operation {
            case .read:
                guard let pointer = window.pointer(at: request.windowOffset, count: request.length) else {
                    return DiskCompletion(tag: request.tag, status: .invalid)
                }
                try backend.read(into: UnsafeMutableRawBufferPointer(start: pointer, count: Int(request.length)), at: request.offset)
                counters.withLock { $0.reads += 1; $0.bytesRead += request.length }
            case .write:
                guard let pointer = window.pointer(at: request.windowOffset, count: request.length) else {
                    return DiskCompletion(tag: request.tag, status: .invalid)
                }
                try backend.write(UnsafeRawBufferPointer(start: pointer, count: Int(request.length)), at: request.offset)
                counters.withLock { $0.writes += 1; $0.bytesWritten += request.length }
            case .flush:
                try backend.flush()
                counters.withLock { $0.flushes += 1 }
            case .discard:
                try backend.discard(offset: request.offset, length: request.length)
                counters.withLock { $0.discards += 1 }
            case .writeZeroes, .writeZeroesKeepAllocated:
                try backend.writeZeroes(offset: request.offset, length: request.length,
                                        deallocating: request.operation == .writeZeroes)
                counters.withLock { $0.writes += 1; $0.bytesWritten += request.length }
            }
            return DiskCompletion(tag: request.tag, status: .ok, bytes: request.length)
        } catch {
            counters.withLock { $0.errors += 1 }
            let status: DiskCompletionStatus = switch error.code {
            case .outOfRange: .outOfRange
            case .unsupported: .unsupported
            case .fenced: .fenced
            default: .ioError
            }
            return DiskCompletion(tag: request.tag, status: status, errno: error.errno ?? 0)
        }
    }
}
