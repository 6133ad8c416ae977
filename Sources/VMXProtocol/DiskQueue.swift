public import SystemSupport
internal import Synchronization

/// The rings of a disk channel in shared memory (`docs/VMX-PROTOCOL.md`, "Disk queue"): requests
/// from the VMM to the agent, completions back, each a single-producer ring of fixed-size records
/// whose indices live in the shared memfd. No system call is made per request: a side rings the
/// other's doorbell only when that side said it was going to sleep.
///
/// Each process uses its side's methods only. The agent trusts nothing the VMM can write: it
/// keeps its own indices privately, copies a request record out of the ring before decoding it,
/// and treats a request producer index more than ``entries`` ahead as a protocol violation.
public final class DiskQueue: Sendable {
    /// Records per ring; a VMM keeps at most this many requests in flight.
    public static let entries = 128
    /// Bytes of the shared memfd.
    public static let byteCount = Layout.requests + entries * Layout.requestSlot + entries * Layout.completionSlot

    /// Byte offsets in the memfd.
    enum Layout {
        static let magic = 0                  // u32 "VDQ1"
        static let version = 4                // u32
        static let entries = 8                // u32
        static let requestProducer = 64       // u32, VMM writes
        static let requestConsumer = 128      // u32, agent writes
        static let agentSleeping = 192        // u32, agent writes (1: wake me through the request doorbell)
        static let completionProducer = 256   // u32, agent writes
        static let completionConsumer = 320   // u32, VMM writes
        static let vmmSleeping = 384          // u32, VMM writes (1: wake me through the completion doorbell)
        static let requests = 4096
        static let requestSlot = 64
        static let completionSlot = 32
        static var completions: Int { requests + DiskQueue.entries * requestSlot }
    }

    static let magic: UInt32 = 0x3151_4456  // "VDQ1"
    static let layoutVersion: UInt32 = 1

    /// The side of the queue a process is on.
    public enum Side: Sendable {
        /// Takes requests, puts completions.
        case agent
        /// Puts requests, takes completions.
        case vmm
    }

    /// The shared memory (pass ``SharedMemoryRegion/descriptor`` to the VMM).
    public let region: SharedMemoryRegion
    /// This process's own copies of the indices it advances (never read back from shared memory).
    private let produced = Mutex<UInt32>(0)
    private let consumed = Mutex<UInt32>(0)

    /// Creates the queue (the agent's side) with an empty header.
    public init(creating name: String) throws(SystemError) {
        region = try SharedMemoryRegion(creating: "disk-queue-\(name)", byteCount: Self.byteCount)
        region.storeWord(Self.magic, at: Layout.magic)
        region.storeWord(Self.layoutVersion, at: Layout.version)
        region.storeWord(UInt32(Self.entries), at: Layout.entries)
    }

    /// Maps a queue received from the agent (the VMM's side).
    ///
    /// - Throws: ``SystemError`` when the memfd has the wrong size or header.
    public init(mapping received: OwnedDescriptor) throws(SystemError) {
        region = try SharedMemoryRegion(mapping: received, expectedByteCount: Self.byteCount)
        guard region.loadWord(at: Layout.magic) == Self.magic, region.loadWord(at: Layout.version) == Self.layoutVersion,
              region.loadWord(at: Layout.entries) == UInt32(Self.entries) else {
            throw SystemError("map", errno: 22, subject: "disk queue header (expected VDQ1 version 1 with \(Self.entries) entries)")
        }
        // The VMM continues the indices the queue holds (zero for a new queue).
        produced.withLock { $0 = region.loadWord(at: Layout.requestProducer) ?? 0 }
        consumed.withLock { $0 = region.loadWord(at: Layout.completionConsumer) ?? 0 }
    }

    /// What putting a record did.
    public enum Put: Sendable, Equatable {
        /// In the ring; `wake` when the other side sleeps and its doorbell must be rung.
        case queued(wake: Bool)
        /// The ring is full (the other side is not taking records).
        case full
    }

    /// One ring: where its slots are and which words its two sides write.
    private struct Ring {
        let slots: Int
        let slotSize: Int
        let recordSize: Int
        let producer: Int
        let consumer: Int
        /// The consumer's sleeping word.
        let consumerSleeping: Int
    }

    private static let requestRing = Ring(slots: Layout.requests, slotSize: Layout.requestSlot, recordSize: DiskRequest.size,
                                          producer: Layout.requestProducer, consumer: Layout.requestConsumer,
                                          consumerSleeping: Layout.agentSleeping)
    private static let completionRing = Ring(slots: Layout.completions, slotSize: Layout.completionSlot, recordSize: DiskCompletion.size,
                                             producer: Layout.completionProducer, consumer: Layout.completionConsumer,
                                             consumerSleeping: Layout.vmmSleeping)

    private func slot(_ ring: Ring, _ index: UInt32) -> Int { ring.slots + Int(index % UInt32(Self.entries)) * ring.slotSize }

    /// Puts `record` into `ring` after this side's producer index.
    private func put(_ record: [UInt8], into ring: Ring) -> Put {
        precondition(record.count == ring.recordSize, "a record of this ring is \(ring.recordSize) bytes")
        return produced.withLock { index -> Put in
            let taken = region.loadWord(at: ring.consumer) ?? 0
            guard index &- taken < UInt32(Self.entries) else { return .full }
            copy(record, to: slot(ring, index))
            index &+= 1
            region.storeWord(index, at: ring.producer)
            SharedMemoryRegion.fence()
            return .queued(wake: region.loadWord(at: ring.consumerSleeping) == 1)
        }
    }

    /// Takes every record of `ring` after this side's consumer index; nil when the producer
    /// index is more than ``entries`` ahead (then nothing is taken), with that index.
    private func take(from ring: Ring) -> (records: [[UInt8]]?, producer: UInt32, consumer: UInt32) {
        consumed.withLock { index in
            let producer = region.loadWord(at: ring.producer) ?? index
            let available = producer &- index
            guard available <= UInt32(Self.entries) else { return (nil, producer, index) }
            var records: [[UInt8]] = []
            records.reserveCapacity(Int(available))
            for _ in 0..<available {
                records.append(copy(count: ring.recordSize, from: slot(ring, index)))
                index &+= 1
            }
            if available > 0 { region.storeWord(index, at: ring.consumer) }
            return (records, producer, index)
        }
    }

    // MARK: VMM side

    /// Puts a request record (``DiskRequest/size`` bytes); serialized here.
    public func putRequest(_ record: [UInt8]) -> Put { put(record, into: Self.requestRing) }

    /// Takes every completion record the agent has put (the VMM's single receiving thread). An
    /// agent never runs ahead of the ring; if it seems to, nothing is taken rather than garbage.
    public func takeCompletions() -> [[UInt8]] { take(from: Self.completionRing).records ?? [] }

    // MARK: Agent side

    /// What taking requests found.
    public enum Taken: Sendable, Equatable {
        /// Copies of the records, oldest first (possibly none).
        case records([[UInt8]])
        /// The VMM's producer index is more than ``entries`` ahead: it does not follow the protocol.
        case violation(String)
    }

    /// Takes every request record the VMM has put (the agent's single serving thread).
    public func takeRequests() -> Taken {
        let taken = take(from: Self.requestRing)
        guard let records = taken.records else {
            return .violation("request producer index \(taken.producer) is \(taken.producer &- taken.consumer) records ahead of "
                              + "\(taken.consumer); the ring holds \(Self.entries)")
        }
        return .records(records)
    }

    /// Puts a completion record (``DiskCompletion/size`` bytes); serialized here, since the
    /// agent's workers complete requests concurrently. `.full` only when the VMM stopped taking
    /// completions, which a VMM that keeps at most ``entries`` requests in flight never does.
    public func putCompletion(_ record: [UInt8]) -> Put { put(record, into: Self.completionRing) }

    // MARK: Sleeping

    /// Says that `side` is about to wait on its doorbell, then looks once more: true when
    /// records arrived meanwhile and the caller must not sleep (it calls ``wokeUp(_:)`` then).
    ///
    /// The flag is stored before the producer index is loaded, with a full barrier between; the
    /// producer stores its index before loading the flag, also with a barrier. So either the
    /// producer sees the flag and rings, or this sees the record: no wake-up is lost.
    public func prepareToSleep(_ side: Side) -> Bool {
        region.storeWord(1, at: side == .agent ? Layout.agentSleeping : Layout.vmmSleeping)
        SharedMemoryRegion.fence()
        let pending = consumed.withLock { index in
            (region.loadWord(at: side == .agent ? Layout.requestProducer : Layout.completionProducer) ?? index) != index
        }
        if pending { wokeUp(side) }
        return pending
    }

    /// Clears `side`'s sleeping flag (after its doorbell rang, or instead of sleeping).
    public func wokeUp(_ side: Side) {
        region.storeWord(0, at: side == .agent ? Layout.agentSleeping : Layout.vmmSleeping)
    }

    // MARK: Bytes

    private func copy(_ record: [UInt8], to offset: Int) {
        guard let slot = region.pointer(at: UInt64(offset), count: UInt64(record.count)) else { return }
        record.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { slot.copyMemory(from: source, byteCount: bytes.count) }
        }
    }

    private func copy(count: Int, from offset: Int) -> [UInt8] {
        guard let slot = region.pointer(at: UInt64(offset), count: UInt64(count)) else { return [] }
        return Array(UnsafeRawBufferPointer(start: slot, count: count))
    }
}
