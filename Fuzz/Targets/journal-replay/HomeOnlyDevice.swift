@testable import VMFSCore
import FuzzSupport

/// The replay oracle: a device decorator through which replay may write only whole sectors at
/// journaled home addresses (name table, descriptors, bitmaps, pointer blocks) or their mirrors.
final class HomeOnlyDevice: BlockDevice {
    let base: any BlockDevice
    let layout: VolumeLayout

    init(_ base: any BlockDevice, layout: VolumeLayout) {
        self.base = base
        self.layout = layout
    }

    var path: String { base.path }
    var size: UInt64 { base.size }
    var alignment: Int { base.alignment }
    var usesDirectIO: Bool { base.usesDirectIO }
    var isReadOnly: Bool { base.isReadOnly }

    private func check(_ offset: UInt64, _ count: Int) {
        let home = JournalReplay.primary(ofMirror: offset, layout: layout)
        guard count == FormatConstants.sectorSize, layout.isJournaledHome(home) else {
            fatalError("fuzz oracle: replay wrote \(count) bytes at \(offset), which is not a journaled home sector or its mirror")
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) { try base.read(into: buffer, at: offset) }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        check(offset, buffer.count)
        try base.write(buffer, at: offset)
    }

    func flush() throws(VMFSError) { try base.flush() }

    func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        fatalError("fuzz oracle: replay zeroed \(length) bytes at \(offset)")
    }

    func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        fatalError("fuzz oracle: replay discarded \(length) bytes at \(offset)")
    }

    func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch where request.kind == .write { check(request.offset, request.buffer.count) }
        try base.perform(batch)
    }

    func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) { try base.lockRange(offset: offset, length: length) }
    func unlockRange(offset: UInt64, length: UInt64) { base.unlockRange(offset: offset, length: length) }
}
