import Synchronization

/// A read-only view of a device with some sectors replaced in memory.
///
/// `fsck.vmfs -n` checks the volume as it will be after the pending journal transactions are
/// replayed, without writing anything: the replay goes into this overlay.
final class OverlayDevice: BlockDevice {
    let base: any BlockDevice
    private let sectors = Mutex<[UInt64: [UInt8]]>([:])

    init(base: any BlockDevice) { self.base = base }

    var path: String { base.path }
    var size: UInt64 { base.size }
    var alignment: Int { base.alignment }
    var usesDirectIO: Bool { base.usesDirectIO }
    var isReadOnly: Bool { false }

    private static let sectorSize = UInt64(FormatConstants.sectorSize)

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try base.read(into: buffer, at: offset)
        let overlay = sectors.withLock { $0 }
        guard !overlay.isEmpty else { return }
        let end = offset + UInt64(buffer.count)
        for (address, image) in overlay where address < end && address + Self.sectorSize > offset {
            let from = max(address, offset)
            let to = min(address + Self.sectorSize, end)
            image.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: buffer[Int(from - offset)..<Int(to - offset)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(from - address)..<Int(to - address)]))
            }
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard offset % Self.sectorSize == 0, buffer.count % Int(Self.sectorSize) == 0 else {
            throw VMFSError(.invalidArgument, "overlay writes must be whole sectors")
        }
        sectors.withLock { s in
            for i in 0..<(buffer.count / Int(Self.sectorSize)) {
                let start = i * Int(Self.sectorSize)
                s[offset + UInt64(start)] = Array(UnsafeRawBufferPointer(rebasing: buffer[start..<(start + Int(Self.sectorSize))]))
            }
        }
    }

    func flush() throws(VMFSError) {}
    func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        throw VMFSError(.readOnly, "the overlay does not zero ranges")
    }
    func discard(offset: UInt64, length: UInt64) throws(VMFSError) {}
    func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch {
            switch request.kind {
            case .read: try read(into: request.buffer, at: request.offset)
            case .write: try write(UnsafeRawBufferPointer(request.buffer), at: request.offset)
            }
        }
    }
    func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) {}
    func unlockRange(offset: UInt64, length: UInt64) {}
}
