internal import Synchronization

/// One descriptor copied out of guest memory (`struct vring_desc`).
struct VirtqueueDescriptor: Sendable, Equatable {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4

    var address: UInt64
    var length: UInt32
    var flags: UInt16
    var nextIndex: UInt16

    /// True when the device may write the buffer (VIRTQ_DESC_F_WRITE).
    var isDeviceWritable: Bool { flags & Self.write != 0 }
}

/// A request the driver made available: the head index and its descriptors in order.
struct DescriptorChain: Sendable, Equatable {
    var head: UInt16
    var descriptors: [VirtqueueDescriptor]
}

/// What the driver did wrong while handing over a chain or a ring.
enum VirtqueueViolation: Error, Sendable, Equatable, CustomStringConvertible {
    /// `avail.idx` moved ahead of the device by more than the queue size.
    case availableIndexJumped(from: UInt16, to: UInt16, queueSize: UInt16)
    /// A ring entry names a descriptor index outside the table.
    case headOutOfRange(UInt16)
    /// A descriptor's `next` points outside the table.
    case nextOutOfRange(UInt16)
    /// The chain is longer than the queue: it loops.
    case chainTooLong(head: UInt16)
    /// VIRTQ_DESC_F_INDIRECT was used but not negotiated.
    case indirectNotNegotiated(head: UInt16)
    /// The ring itself lies outside guest memory.
    case ringOutsideMemory

    var description: String {
        switch self {
        case .availableIndexJumped(let from, let to, let size):
            "avail.idx jumped from \(from) to \(to), more than the queue size \(size)"
        case .headOutOfRange(let index): "avail ring names descriptor \(index), outside the table"
        case .nextOutOfRange(let index): "descriptor next index \(index) is outside the table"
        case .chainTooLong(let head): "descriptor chain starting at \(head) is longer than the queue (loop)"
        case .indirectNotNegotiated(let head): "chain \(head) uses INDIRECT, which was not negotiated"
        case .ringOutsideMemory: "the ring is outside guest memory"
        }
    }
}

/// The outcome of taking one entry from the available ring.
enum AvailableChain: Sendable, Equatable {
    /// A structurally valid chain (buffer addresses are checked by the device when used).
    case chain(DescriptorChain)
    /// The chain's head is valid but walking it failed; the device completes it with no data.
    case malformed(head: UInt16, VirtqueueViolation)
}

/// A split virtqueue in the legacy layout (descriptor table, available ring, then the used ring at
/// the next 4096-byte boundary), read and written through bounds-checked ``GuestMemory`` accesses.
///
/// Every value is read from guest memory once and validated before use, so a guest changing the
/// ring concurrently cannot make the device step outside the queue or guest memory.
struct SplitVirtqueue: Sendable {
    static let legacyAlignment: UInt64 = 4096

    let size: UInt16
    let descriptorTable: UInt64
    let availableRing: UInt64
    let usedRing: UInt64
    private(set) var lastAvailableIndex: UInt16 = 0
    private(set) var usedIndex: UInt16 = 0

    /// Bytes the legacy layout of a queue of `size` entries occupies.
    static func legacyByteCount(size: UInt16) -> UInt64 {
        let n = UInt64(size)
        let availableEnd = 16 * n + 6 + 2 * n
        let usedStart = (availableEnd + legacyAlignment - 1) / legacyAlignment * legacyAlignment
        return usedStart + 6 + 8 * n
    }

    /// Places a queue at `address` (the legacy QUEUE_PFN × 4096), or fails if any part of the ring
    /// would be outside guest memory.
    init(size: UInt16, address: UInt64, memory: GuestMemory) throws(VirtqueueViolation) {
        guard size > 0, size & (size - 1) == 0,
              memory.contains(address, count: Self.legacyByteCount(size: size)) else { throw .ringOutsideMemory }
        self.size = size
        descriptorTable = address
        availableRing = address + 16 * UInt64(size)
        let availableEnd = availableRing + 6 + 2 * UInt64(size)
        usedRing = (availableEnd + Self.legacyAlignment - 1) / Self.legacyAlignment * Self.legacyAlignment
    }

    /// Sets both sides' positions from a saved state (restore): the next available entry the device
    /// takes and the used index it last published.
    mutating func restorePositions(lastAvailable: UInt16, used: UInt16) {
        lastAvailableIndex = lastAvailable
        usedIndex = used
    }

    /// Takes the next available chain, `nil` when the driver has made nothing new available.
    ///
    /// - Throws: ``VirtqueueViolation`` when the ring is unusable (index jump, bad head); the device
    ///   must then stop using the queue and ask for a reset.
    mutating func nextAvailable(memory: GuestMemory) throws(VirtqueueViolation) -> AvailableChain? {
        guard let availableIndex = try? memory.load(UInt16.self, at: availableRing + 2) else { throw .ringOutsideMemory }
        atomicMemoryFence(ordering: .acquiring)
        let pending = availableIndex &- lastAvailableIndex
        guard pending != 0 else { return nil }
        guard pending <= size else {
            throw .availableIndexJumped(from: lastAvailableIndex, to: availableIndex, queueSize: size)
        }
        let slot = availableRing + 4 + 2 * UInt64(lastAvailableIndex % size)
        guard let head = try? memory.load(UInt16.self, at: slot) else { throw .ringOutsideMemory }
        guard head < size else { throw .headOutOfRange(head) }
        lastAvailableIndex &+= 1
        return walkChain(from: head, memory: memory)
    }

    private func descriptor(_ index: UInt16, memory: GuestMemory) -> VirtqueueDescriptor? {
        let address = descriptorTable + 16 * UInt64(index)
        guard let raw = memory.hostPointer(at: address, count: 16) else { return nil }
        return VirtqueueDescriptor(
            address: UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self)),
            length: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
            flags: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
            nextIndex: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
    }

    private func walkChain(from head: UInt16, memory: GuestMemory) -> AvailableChain {
        var descriptors: [VirtqueueDescriptor] = []
        var index = head
        while true {
            guard descriptors.count < Int(size) else { return .malformed(head: head, .chainTooLong(head: head)) }
            guard let entry = descriptor(index, memory: memory) else {
                return .malformed(head: head, .ringOutsideMemory)
            }
            guard entry.flags & VirtqueueDescriptor.indirect == 0 else {
                return .malformed(head: head, .indirectNotNegotiated(head: head))
            }
            descriptors.append(entry)
            guard entry.flags & VirtqueueDescriptor.next != 0 else { break }
            guard entry.nextIndex < size else { return .malformed(head: head, .nextOutOfRange(entry.nextIndex)) }
            index = entry.nextIndex
        }
        return .chain(DescriptorChain(head: head, descriptors: descriptors))
    }

    /// Returns a chain to the driver with the number of bytes the device wrote into it.
    mutating func complete(head: UInt16, writtenLength: UInt32, memory: GuestMemory) {
        let element = usedRing + 4 + 8 * UInt64(usedIndex % size)
        try? memory.store(UInt32(head), at: element)
        try? memory.store(writtenLength, at: element + 4)
        usedIndex &+= 1
        atomicMemoryFence(ordering: .releasing)
        try? memory.store(usedIndex, at: usedRing + 2)
    }

    /// True unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
    func driverWantsInterrupt(memory: GuestMemory) -> Bool {
        ((try? memory.load(UInt16.self, at: availableRing)) ?? 0) & 1 == 0
    }
}
