public import Hypervisor
public import SystemSupport
public import VMXProtocol
#if canImport(Glibc)
internal import Glibc
#endif

/// A virtio-blk backend whose storage is served by the host agent over a disk channel.
///
/// Requests and completions travel in the channel's shared-memory rings (``DiskQueue``); an
/// eventfd doorbell is rung only when the other side sleeps. Data crosses in the shared data
/// window: a write is copied from guest memory into a window slot before its request is put, a
/// read is copied out of its slot after the completion arrives. Several requests are in flight at
/// once (one per slot, at most ``DiskQueue/entries``). When the agent goes away, requests in
/// flight wait for a new channel (``attach(queue:window:requestDoorbell:completionDoorbell:)``,
/// after an agent adopts the VM) and are sent again: every operation is idempotent. Nothing here
/// ever touches the volume.
public final class RemoteDiskBackend: DiskBackend, Sendable {
    public let byteCount: UInt64
    public let identifier: String
    public let isReadOnly: Bool
    /// Largest piece of one request that travels through one window slot.
    public let slotBytes: UInt64

    private struct Channel {
        var queue: DiskQueue
        var window: SharedMemoryRegion
        var requestDoorbell: EventDoorbell
        var completionDoorbell: EventDoorbell
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

    /// Starts using a (new) channel. Requests in flight on the old one are sent again on it.
    ///
    /// - Throws: ``DiskError/Code/io`` when the window is smaller than one slot.
    public func attach(queue: DiskQueue, window: SharedMemoryRegion, requestDoorbell: EventDoorbell,
                       completionDoorbell: EventDoorbell) throws(DiskError) {
        let slots = UInt64(window.byteCount) / slotBytes
        guard slots >= 1 else {
            throw DiskError(.io, "disk \(identifier): a data window of \(window.byteCount) bytes holds no \(slotBytes)-byte slot")
        }
        let channel = Channel(queue: queue, window: window, requestDoorbell: requestDoorbell, completionDoorbell: completionDoorbell,
                              generation: 0, freeSlots: Array(0..<Int(slots)))
        // Every request in flight now belongs to the old channel: it is sent again on this one.
        let (generation, old, lost) = state.withLock { s -> (Int, Channel?, [Pending]) in
            s.generation += 1
            let old = s.channel
            var new = channel
            new.generation = s.generation
            s.channel = new
            return (s.generation, old, Array(s.pending.values))
        }
        old?.completionDoorbell.ring()  // its receiving thread sees it was replaced and ends
        for request in lost { request.settle(.channelLost) }
        do {
            try NativeThread.detach(name: "vmx-disk-rx") { [weak self] in self?.receiveCompletions(on: channel, generation: generation) }
        } catch {
            state.withLock { s in if s.channel?.generation == generation { s.channel = nil } }
            throw DiskError(.io, "disk \(identifier): \(error)")
        }
    }

    /// Fails every waiting and later request; the VM is going away.
    public func close() {
        let (channel, pending) = state.withLock { s -> (Channel?, [Pending]) in
            s.closed = true
            return (s.channel, Array(s.pending.values))
        }
        channel?.completionDoorbell.ring()
        for request in pending { request.settle(.shutDown) }
    }

    /// True while a channel is attached.
    public var isConnected: Bool { state.withLock { $0.channel != nil } }

    /// Takes completions off `channel` until it is replaced or the disk closes.
    private func receiveCompletions(on channel: Channel, generation: Int) {
        let queue = channel.queue
        while state.withLock(waking: .none, { !$0.closed && $0.channel?.generation == generation }) {
            let records = queue.takeCompletions()
            if records.isEmpty {
                if queue.prepareToSleep(.vmm) { continue }
                channel.completionDoorbell.wait(timeoutMilliseconds: 1000)
                queue.wokeUp(.vmm)
                continue
            }
            for record in records {
                guard let completion = DiskCompletion.decode(record[...]) else { continue }
                // A completion for a tag nobody waits for (a request already settled, or a
                // confused peer) is dropped.
                state.withLock(waking: .none) { $0.pending[completion.tag] }?.settle(.completed(completion))
            }
        }
    }

    /// Puts one request and waits for its completion, sending it again on a new channel when the
    /// agent is replaced. `copyIn` fills the window slot before sending; `copyOut` reads it after.
    private func perform(_ operation: DiskOperation, offset: UInt64, length: UInt64,
                         copyIn: ((UnsafeMutableRawPointer) -> Void)? = nil,
                         copyOut: ((UnsafeMutableRawPointer) -> Void)? = nil) throws(DiskError) {
        let needsSlot = copyIn != nil || copyOut != nil
        while true {
            let taken = state.wait(for: { s in
                s.closed || (s.pending.count < DiskQueue.entries && (s.channel.map { !needsSlot || !$0.freeSlots.isEmpty } ?? false))
            }) { s -> (Channel, Int?, UInt64, Pending)? in
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
            send(request, on: channel, pending: pending)
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

    /// Puts `request` in the ring, ringing the agent's doorbell when it sleeps. A full ring (an
    /// agent that stopped taking requests) is tried again until the request is settled otherwise.
    private func send(_ request: DiskRequest, on channel: Channel, pending: Pending) {
        let record = request.encoded
        while true {
            switch channel.queue.putRequest(record) {
            case .queued(let wake):
                if wake { channel.requestDoorbell.ring() }
                return
            case .full:
                let settled = pending.outcome.withLock(waking: .none) { if case .waiting = $0 { false } else { true } }
                if settled { return }
                usleep(1000)
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
