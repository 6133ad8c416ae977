public import Hypervisor
public import SystemSupport
public import VMXProtocol
internal import Synchronization

/// Serves one VM disk to its VMM over a disk channel (`docs/VMX-PROTOCOL.md`): a request ring and
/// a completion ring in shared memory (``DiskQueue``), a shared data window, and two eventfd
/// doorbells rung only when the other side sleeps — no system call per request under load.
///
/// Every request is copied out of the ring and checked before anything is done: operation, that
/// `[offset, offset + length)` lies on the disk, and that its data lies in the shared window. A
/// VMM compromised by its guest can therefore read and write its own disk and nothing else.
/// The serving thread runs the last request of each batch itself (a VMM with one request in
/// flight costs no thread hand-off) and gives the others to the agent's worker pool.
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
    /// The request and completion rings.
    public let queue: DiskQueue
    /// Rung by the VMM when it put requests while this server slept.
    public let requestDoorbell: EventDoorbell
    /// Rung here when completions were put while the VMM slept.
    public let completionDoorbell: EventDoorbell
    private let pool: WorkerPool
    private let counters = Mutex(Counters())
    private let stopped = Atomic<Bool>(false)
    private let violation = Mutex<String?>(nil)

    /// Creates the channel: its queue, its window (`windowBytes`, a multiple of 1 MiB) and doorbells.
    public init(backend: any DiskBackend, windowBytes: Int, pool: WorkerPool, name: String) throws(SystemError) {
        self.backend = backend
        self.pool = pool
        window = try SharedMemoryRegion(creating: "disk-window-\(name)", byteCount: windowBytes)
        queue = try DiskQueue(creating: name)
        requestDoorbell = try EventDoorbell()
        completionDoorbell = try EventDoorbell()
    }

    /// The descriptors the VMM needs, in the order ``DiskSpecification`` numbers them: queue,
    /// window, request doorbell, completion doorbell.
    public var peerDescriptors: [Int32] {
        [queue.region.descriptor.rawValue, window.descriptor.rawValue, requestDoorbell.descriptor.rawValue,
         completionDoorbell.descriptor.rawValue]
    }

    /// What the VM did so far.
    public var statistics: Counters { counters.withLock { $0 } }

    /// Why serving stopped on its own: the VMM broke the queue protocol.
    public var protocolViolation: String? { violation.withLock { $0 } }

    /// Starts serving requests on a thread of its own.
    public func start() throws(SystemError) {
        try NativeThread.detach(name: "hostd-disk") { [self] in serve() }
    }

    /// Stops serving: requests not yet taken stay in the ring unanswered (the VMM sends them
    /// again on the channel of the next agent); requests already running still complete.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        requestDoorbell.ring()
    }

    private func serve() {
        while !stopped.load(ordering: .acquiring) {
            switch queue.takeRequests() {
            case .violation(let reason):
                counters.withLock { $0.rejected += 1 }
                violation.withLock { $0 = reason }
                return
            case .records(let records) where records.isEmpty:
                if queue.prepareToSleep(.agent) { continue }
                if stopped.load(ordering: .acquiring) { return }
                requestDoorbell.wait(timeoutMilliseconds: 1000)
                queue.wokeUp(.agent)
            case .records(let records):
                for (index, record) in records.enumerated() {
                    guard let request = accepted(record) else { continue }
                    if index == records.count - 1 {
                        reply(execute(request))
                    } else {
                        pool.submit { [self] in reply(execute(request)) }
                    }
                }
            }
        }
    }

    /// The request in `record` when it can be served; otherwise answers it (when it has a tag).
    private func accepted(_ record: [UInt8]) -> DiskRequest? {
        switch DiskRequest.decode(record[...]) {
        case .invalid(let tag, _):
            counters.withLock { $0.rejected += 1 }
            if let tag { reply(DiskCompletion(tag: tag, status: .invalid)) }
            return nil
        case .request(let request):
            if let status = check(request) {
                counters.withLock { $0.rejected += 1 }
                reply(DiskCompletion(tag: request.tag, status: status))
                return nil
            }
            return request
        }
    }

    private func reply(_ completion: DiskCompletion) {
        switch queue.putCompletion(completion.encoded) {
        case .queued(let wake):
            if wake { completionDoorbell.ring() }
        case .full:
            // Only a VMM that stopped taking completions gets here; it loses this one.
            counters.withLock { $0.rejected += 1 }
        }
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
