internal import Synchronization

/// Request types, status values and feature bits of virtio-blk (`<linux/virtio_blk.h>`).
enum VirtioBlockProtocol {
    static let requestIn: UInt32 = 0
    static let requestOut: UInt32 = 1
    static let requestFlush: UInt32 = 4
    static let requestGetID: UInt32 = 8
    static let requestDiscard: UInt32 = 11
    static let requestWriteZeroes: UInt32 = 13

    static let statusOK: UInt8 = 0
    static let statusIOError: UInt8 = 1
    static let statusUnsupported: UInt8 = 2

    static let featureSegmentMax: UInt32 = 1 << 2
    static let featureReadOnly: UInt32 = 1 << 5
    static let featureBlockSize: UInt32 = 1 << 6
    static let featureFlush: UInt32 = 1 << 9
    static let featureDiscard: UInt32 = 1 << 13
    static let featureWriteZeroes: UInt32 = 1 << 14

    static let sectorSize: UInt64 = 512
    static let headerSize: UInt32 = 16
    static let identifierSize = 20
    /// Largest data transfer accepted in one request (bounds VMM work per exit).
    static let maximumTransfer: UInt64 = 64 << 20

    /// Ranges per DISCARD or WRITE_ZEROES request (`max_discard_seg`, `max_write_zeroes_seg`).
    static let maximumRangesPerRequest: UInt32 = 1
    /// Sectors per DISCARD range (`max_discard_sectors`): 1 GiB, a metadata operation.
    static let maximumDiscardSectors: UInt32 = 1 << 21
    /// Sectors per WRITE_ZEROES range (`max_write_zeroes_sectors`): 64 MiB, the transfer cap,
    /// since a backend may have to write the zeros.
    static let maximumWriteZeroesSectors = UInt32(maximumTransfer / sectorSize)
    /// `struct virtio_blk_discard_write_zeroes`: le64 sector, le32 num_sectors, le32 flags.
    static let rangeSize = 16
    /// VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: the device may deallocate the zeroed range.
    static let flagUnmap: UInt32 = 1
}

/// Counters a virtio-blk device keeps (for tests and diagnostics).
public struct VirtioBlockStatistics: Sendable, Equatable {
    public var reads = 0
    public var writes = 0
    public var flushes = 0
    public var discards = 0
    public var writeZeroes = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// Requests completed with IOERR or UNSUPP, or dropped as malformed.
    public var rejectedRequests = 0
}

/// A virtio-blk device over a ``DiskBackend``. Every descriptor of every request is checked:
/// direction, guest-memory bounds, sizes, and sector range; a bad request gets IOERR/UNSUPP
/// (or, when even the status byte is unusable, is returned with no data written).
final class VirtioBlock: VirtioDeviceModel {
    let backend: any DiskBackend
    let queueSize: UInt16
    private let statistics = Mutex(VirtioBlockStatistics())

    init(backend: any DiskBackend, queueSize: UInt16 = 256) {
        self.backend = backend
        self.queueSize = queueSize
    }

    var deviceType: UInt16 { 2 }
    var transitionalPCIDeviceID: UInt16 { 0x1001 }
    var pciClassCode: UInt32 { 0x018000 }
    var queueSizes: [UInt16] { [queueSize] }

    var offeredFeatures: UInt32 {
        var features = VirtioBlockProtocol.featureSegmentMax | VirtioBlockProtocol.featureBlockSize
            | VirtioBlockProtocol.featureFlush
        if backend.isReadOnly {
            features |= VirtioBlockProtocol.featureReadOnly
        } else {
            features |= VirtioBlockProtocol.featureDiscard | VirtioBlockProtocol.featureWriteZeroes
        }
        return features
    }

    var counters: VirtioBlockStatistics { statistics.withLock { $0 } }

    /// `struct virtio_blk_config` (60 bytes used).
    var configurationBytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 60)
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        put(backend.byteCount / VirtioBlockProtocol.sectorSize, 0)  // capacity in sectors
        put(UInt32(0), 8)                                         // size_max (not offered)
        put(UInt32(queueSize) - 2, 12)                            // seg_max
        put(UInt32(512), 20)                                      // blk_size
        put(VirtioBlockProtocol.maximumDiscardSectors, 36)        // max_discard_sectors
        put(VirtioBlockProtocol.maximumRangesPerRequest, 40)      // max_discard_seg
        put(UInt32(8), 44)                                        // discard_sector_alignment
        put(VirtioBlockProtocol.maximumWriteZeroesSectors, 48)    // max_write_zeroes_sectors
        put(VirtioBlockProtocol.maximumRangesPerRequest, 52)      // max_write_zeroes_seg
        bytes[56] = 1                                             // write_zeroes_may_unmap
        return bytes
    }

    func handleMalformed(head: UInt16, violation: VirtqueueViolation, queue: Int) -> UInt32 {
        statistics.withLock { $0.rejectedRequests += 1 }
        return 0
    }

    /// Processes one request and returns the bytes written to guest memory (data + status).
    func handle(_ chain: DescriptorChain, queue: Int, memory: GuestMemory, negotiatedFeatures: UInt32) -> UInt32 {
        let descriptors = chain.descriptors
        // The status descriptor: last, device-writable, at least one byte, inside guest memory.
        guard descriptors.count >= 2, let statusDescriptor = descriptors.last, statusDescriptor.isDeviceWritable,
              statusDescriptor.length >= 1,
              let statusPointer = memory.hostPointer(at: statusDescriptor.address, count: 1)
        else {
            statistics.withLock { $0.rejectedRequests += 1 }
            return 0
        }
        var written: UInt32 = 0
        let status = execute(descriptors: descriptors.dropLast(), memory: memory, negotiatedFeatures: negotiatedFeatures,
                             written: &written)
        statusPointer.storeBytes(of: status, as: UInt8.self)
        memory.markDirty(statusDescriptor.address, count: 1)
        if status != VirtioBlockProtocol.statusOK { statistics.withLock { $0.rejectedRequests += 1 } }
        return written + 1
    }

    /// A data buffer resolved to host memory.
    private struct Segment {
        var pointer: UnsafeMutableRawPointer
        var length: Int
        /// The guest-physical address (for marking the VMM's writes dirty).
        var address: UInt64
    }

    private func execute(descriptors: ArraySlice<VirtqueueDescriptor>, memory: GuestMemory, negotiatedFeatures: UInt32,
                         written: inout UInt32) -> UInt8 {
        typealias P = VirtioBlockProtocol
        // Header: first descriptor, device-readable, at least 16 bytes, inside guest memory.
        guard let header = descriptors.first, !header.isDeviceWritable, header.length >= P.headerSize,
              let headerPointer = memory.hostPointer(at: header.address, count: UInt64(P.headerSize))
        else { return P.statusIOError }
        let type = UInt32(littleEndian: headerPointer.loadUnaligned(as: UInt32.self))
        let sector = UInt64(littleEndian: headerPointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))

        let knownTypes = [P.requestIn, P.requestOut, P.requestFlush, P.requestGetID, P.requestDiscard, P.requestWriteZeroes]
        guard knownTypes.contains(type) else { return P.statusUnsupported }
        let dataDescriptors = descriptors.dropFirst()
        let isRead = type == P.requestIn || type == P.requestGetID
        var segments: [Segment] = []
        var total: UInt64 = 0
        for descriptor in dataDescriptors {
            // Direction: the device writes IN/GET_ID buffers and only reads the others.
            guard descriptor.isDeviceWritable == isRead else { return P.statusIOError }
            guard let pointer = memory.hostPointer(at: descriptor.address, count: UInt64(descriptor.length)) else {
                return P.statusIOError
            }
            segments.append(Segment(pointer: pointer, length: Int(descriptor.length), address: descriptor.address))
            total += UInt64(descriptor.length)
            guard total <= P.maximumTransfer else { return P.statusIOError }
        }

        switch type {
        case P.requestIn, P.requestOut:
            guard total % P.sectorSize == 0, sector <= backend.byteCount / P.sectorSize,
                  total <= backend.byteCount - sector * P.sectorSize else { return P.statusIOError }
            if type == P.requestOut, backend.isReadOnly { return P.statusIOError }
            var offset = sector * P.sectorSize
            do {
                for segment in segments {
                    if type == P.requestIn {
                        // Marked even when the read fails: the backend may have written part of the buffer.
                        defer { memory.markDirty(segment.address, count: UInt64(segment.length)) }
                        try backend.read(into: UnsafeMutableRawBufferPointer(start: segment.pointer, count: segment.length),
                                         at: offset)
                    } else {
                        try backend.write(UnsafeRawBufferPointer(start: segment.pointer, count: segment.length), at: offset)
                    }
                    offset += UInt64(segment.length)
                }
            } catch {
                return P.statusIOError
            }
            statistics.withLock {
                if type == P.requestIn {
                    $0.reads += 1
                    $0.bytesRead += total
                } else {
                    $0.writes += 1
                    $0.bytesWritten += total
                }
            }
            if type == P.requestIn { written = UInt32(total) }
            return P.statusOK
        case P.requestFlush:
            do { try backend.flush() } catch { return P.statusIOError }
            statistics.withLock { $0.flushes += 1 }
            return P.statusOK
        case P.requestGetID:
            guard let segment = segments.first else { return P.statusIOError }
            var identifier = Array(backend.identifier.utf8.prefix(P.identifierSize))
            identifier += [UInt8](repeating: 0, count: P.identifierSize - identifier.count)
            let count = min(segment.length, P.identifierSize)
            for i in 0..<count { segment.pointer.storeBytes(of: identifier[i], toByteOffset: i, as: UInt8.self) }
            memory.markDirty(segment.address, count: UInt64(count))
            written = UInt32(count)
            return P.statusOK
        case P.requestDiscard, P.requestWriteZeroes:
            return discardOrZero(isDiscard: type == P.requestDiscard, segments: segments, total: total,
                                 negotiatedFeatures: negotiatedFeatures)
        default:
            return P.statusUnsupported
        }
    }

    /// DISCARD and WRITE_ZEROES: only when negotiated, one range per request (as advertised), at
    /// most the advertised sectors, known flags only (UNMAP only for WRITE_ZEROES). A range may be
    /// split across descriptors. WRITE_ZEROES guarantees zeros; with UNMAP the backend may free the space.
    private func discardOrZero(isDiscard: Bool, segments: [Segment], total: UInt64, negotiatedFeatures: UInt32) -> UInt8 {
        typealias P = VirtioBlockProtocol
        let feature = isDiscard ? P.featureDiscard : P.featureWriteZeroes
        guard negotiatedFeatures & feature != 0, !backend.isReadOnly else { return P.statusUnsupported }
        let rangeSize = UInt64(P.rangeSize)
        guard total > 0, total % rangeSize == 0 else { return P.statusIOError }
        guard total / rangeSize <= UInt64(P.maximumRangesPerRequest) else { return P.statusUnsupported }
        var range = [UInt8](repeating: 0, count: P.rangeSize)
        var filled = 0
        for segment in segments where segment.length > 0 {
            let count = segment.length
            range.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[filled..<(filled + count)])
                .copyMemory(from: UnsafeRawBufferPointer(start: segment.pointer, count: count)) }
            filled += count
        }
        let start = range.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let count = range.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        let flags = range.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        guard flags & ~P.flagUnmap == 0, !(isDiscard && flags & P.flagUnmap != 0) else { return P.statusUnsupported }
        guard count <= (isDiscard ? P.maximumDiscardSectors : P.maximumWriteZeroesSectors) else { return P.statusIOError }
        let capacity = backend.byteCount / P.sectorSize
        guard start <= capacity, UInt64(count) <= capacity - start else { return P.statusIOError }
        do {
            if isDiscard {
                try backend.discard(offset: start * P.sectorSize, length: UInt64(count) * P.sectorSize)
            } else {
                try backend.writeZeroes(offset: start * P.sectorSize, length: UInt64(count) * P.sectorSize,
                                        deallocating: flags & P.flagUnmap != 0)
            }
        } catch {
            return isDiscard && error.code == .unsupported ? P.statusUnsupported : P.statusIOError
        }
        statistics.withLock { if isDiscard { $0.discards += 1 } else { $0.writeZeroes += 1 } }
        return P.statusOK
    }
}
