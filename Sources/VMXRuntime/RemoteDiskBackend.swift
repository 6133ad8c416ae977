public import Hypervisor
public import SystemSupport
public import VMXProtocol

/// A virtio-blk backend whose storage is served by the host agent over a disk channel.
///
/// Data crosses in the shared data window: a write is copied from guest memory into a window slot
/// before its request is sent, a read is copied out of its slot after the completion arrives.
/// Several requests are in flight at once (one per slot). When the channel breaks (the agent
/// died), requests in flight wait for a new channel (``attach(channel:window:)``, after an agent
/// adopts the VM) and are sent again: every operation is idempotent. Nothing here ever touches
/// the volume.
public final class RemoteDiskBackend: DiskBackend, Sendable {
    public let byteCount: UInt64
    public let identifier: String
    public let isReadOnly: Bool
    /// Largest piece of one request that travels through one window slot.
    public let slotBytes: UInt64

    private struct Channel {
        var socket: RecordSocket
        var window: SharedMemoryRegion
        var generation: Int
        var freeSlots: [Int]
    }

    private enum Outcome {
        case waiting
        case completed(DiskCompletion)
        case channelLost
        case shutDown
    }

    /// One request in flight, waited for by the thread that sent it alone: a completion wakes
    /// that thread, not every thread with a request in flight.
    private final class Pending: Sendable {
        let outcome = Monitor(Outcome.waiting)

        /// Settles the request unless it already has an outcome.
        func settle(_ outcome: Outcome) {
            self.outcome.withLock { current in
                if case .waiting = current { current = outcome }
            }
        }

        func wait() -> Outcome {
            outcome.wait(for: { if case .waiting = $0 { false } else { true } }, waking: .none) { $0 } ?? .shutDown
        }
    }

    private struct State {
        var channel: Channel?
        var generation = 0
        var pending: [UInt64: Pending] = [:]
        var nextTag: UInt64 = 1
        var closed = false
    }

    private let state = Monitor(State())

    /// - Parameter slotBytes: The window is split into slots of this size (1 MiB by default).
    public init(byteCount: UInt64, identifier: String, isReadOnly: Bool, slotBytes: UInt64 = 1 << 20) {
        self.byteCount = byteCount
        self.identifier = identifier
        self.isReadOnly = isReadOnly
        self.slotBytes = slotBytes
    }

    /// Starts using a (new) channel; requests waiting for one are sent on it.
    ///
    /// - Throws: ``DiskError/Code/io`` when the window is smaller than one slot.
    public func attach(channel socket: RecordSocket, window: SharedMemoryRegion) throws(DiskError) {
        let slots = UInt64(window.byteCount) / slotBytes
        guard slots >= 1 else {
            throw DiskError(.io, "disk \(identifier): a data window of \(window.byteCount) bytes holds no \(slotBytes)-byte slot")
        }
        let generation = state.withLock { s -> Int in
            s.generation += 1
            if let old = s.channel { old.socket.shutdown() }
            s.channel = Channel(socket: socket, window: window, generation: s.generation, freeSlots: Array(0..<Int(slots)))
            return s.generation
        }
        do {
            try NativeThread.detach(name: "vmx-disk-rx") { [weak self] in self?.receiveCompletions(from: socket, generation: generation) }
        } catch {
            state.withLock { s in if s.channel?.generation == generation { s.channel = nil } }
            throw DiskError(.io, "disk \(identifier): \(error)")
        }
    }

    /// Fails every waiting and later request; the VM is going away.
    public func close() {
        let (socket, pending) = state.withLock { s -> (RecordSocket?, [Pending]) in
            s.closed = true
            return (s.channel?.socket, Array(s.pending.values))
        }
        socket?.shutdown()
        for request in pending { request.settle(.shutDown) }
    }

    /// True while a channel is attached.
    public var isConnected: Bool { state.withLock { $0.channel != nil } }

    private func receiveCompletions(from socket: RecordSocket, generation: Int) {
        while true {
            let record: [UInt8]?
            do { record = try socket.receive(maximum: DiskCompletion.size) } catch { record = nil }
            guard let record else { break }
            guard let completion = DiskCompletion.decode(record[...]) else { continue }
            // A completion for a tag nobody waits for (a request already settled, or a hostile
            // or confused peer) is dropped.
            state.withLock(waking: .none) { $0.pending[completion.tag] }?.settle(.completed(completion))
        }
        let lost = state.withLock { s -> [Pending] in
            guard s.channel?.generation == generation else { return [] }
            s.channel = nil
            return Array(s.pending.values)
        }
        for request in lost { request.settle(.channelLost) }
    }

    /// Sends one request and waits for its completion, retrying on a new channel when the
    /// channel breaks. `copyIn` fills the window slot before sending; `copyOut` reads it after.
    private func perform(_ operation: DiskOperation, offset: UInt64, length: UInt64,
                         copyIn: ((UnsafeMutableRawPointer) -> Void)? = nil,
                         copyOut: ((UnsafeMutableRawPointer) -> Void)? = nil) throws(DiskError) {
        let needsSlot = copyIn != nil || copyOut != nil
        while true {
            let taken = state.wait(for: { $0.closed || ($0.channel.map { !needsSlot || !$0.freeSlots.isEmpty } ?? false) }) {
                s -> (Channel, Int?, UInt64, Pending)? in
                guard !s.closed, var channel = s.channel else { return nil }
                let slot = needsSlot ? channel.freeSlots.removeLast() : nil
                s.channel = channel
                let tag = s.nextTag
                s.nextTag &+= 1
                let pending = Pending()
                s.pending[tag] = pending
                return (channel, slot, tag, pending)
            }
            guard let (channel, slot, tag, pending) = taken ?? nil else {
                throw DiskError(.io, "disk \(identifier): the VM is shutting down")
            }
            let windowOffset = UInt64(slot ?? 0) * slotBytes
            defer {
                state.withLock { s in
                    s.pending[tag] = nil
                    if let slot, s.channel?.generation == channel.generation { s.channel?.freeSlots.append(slot) }
                }
            }
            if let copyIn, let pointer = channel.window.pointer(at: windowOffset, count: length) { copyIn(pointer) }
            let request = DiskRequest(tag: tag, operation: operation, offset: offset, length: length, windowOffset: windowOffset)
            do {
                try channel.socket.send(request.encoded)
            } catch {
                // The receiver thread sees the broken channel too; wait for it to say so.
            }
            switch pending.wait() {
            case .completed(let completion):
                switch completion.status {
                case .ok:
                    if let copyOut, let pointer = channel.window.pointer(at: windowOffset, count: length) { copyOut(pointer) }
                    return
                case .unsupported:
                    throw DiskError(.unsupported, "disk \(identifier): \(operation) is not supported", errno: completion.errno)
                case .outOfRange:
                    throw DiskError(.outOfRange, "disk \(identifier): \(operation) at \(offset)+\(length) is outside the disk")
                case .fenced:
                    throw DiskError(.io, "disk \(identifier): the host may not write (fenced or lock lost)", errno: completion.errno)
                case .ioError, .invalid:
                    throw DiskError(.io, "disk \(identifier): \(operation) at \(offset) failed (\(completion.status))", errno: completion.errno)
                }
            case .channelLost, .waiting:
                continue  // sent again on the next channel
            case .shutDown:
                throw DiskError(.io, "disk \(identifier): the VM is shutting down")
            }
        }
    }

    private func pieces(_ length: Int, _ body: (Int, Int) throws(DiskError) -> Void) throws(DiskError) {
        var done = 0
        while done < length {
            let count = min(Int(slotBytes), length - done)
            try body(done, count)
            done += count
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        guard let base = buffer.baseAddress else { return }
        try pieces(buffer.count) { (done, count) throws(DiskError) in
            try perform(.read, offset: offset + UInt64(done), length: UInt64(count),
                        copyOut: { window in (base + done).copyMemory(from: window, byteCount: count) })
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        guard let base = buffer.baseAddress else { return }
        guard !isReadOnly else { throw DiskError(.readOnly, "disk \(identifier) is read-only") }
        try pieces(buffer.count) { (done, count) throws(DiskError) in
            try perform(.write, offset: offset + UInt64(done), length: UInt64(count),
                        copyIn: { window in window.copyMemory(from: base + done, byteCount: count) })
        }
    }

    public func flush() throws(DiskError) {
        try perform(.flush, offset: 0, length: 0)
    }

    public func discard(offset: UInt64, length: UInt64) throws(DiskError) {
        guard !isReadOnly else { throw DiskError(.readOnly, "disk \(identifier) is read-only") }
        try perform(.discard, offset: offset, length: length)
    }

    /// The agent guarantees zeros (on VMFS a punched hole, or written zeros when the space must stay allocated).
    public func writeZeroes(offset: UInt64, length: UInt64, deallocating: Bool) throws(DiskError) {
        guard !isReadOnly else { throw DiskError(.readOnly, "disk \(identifier) is read-only") }
        try perform(deallocating ? .writeZeroes : .writeZeroesKeepAllocated, offset: offset, length: length)
    }
}
