import Synchronization

/// Whether this host may write to the volume.
///
/// A host may write only while its last successful heartbeat renewal was *issued* less than
/// D − T ago: every write it issues then lands (within the I/O timeout T) before others may
/// declare it dead (D after they last saw its slot change). A host that finds its slot taken
/// over is fenced for good: its handles are stale and it writes nothing more.
final class FenceState: Sendable {
    private struct State {
        var lastRenewalIssued: UInt64
        var lost: String?
    }

    private let state: Mutex<State>
    let writeWindow: UInt64
    /// Renews the heartbeat now (a compare-and-write of the own slot); returns false if it failed.
    private let renewer = Mutex<(@Sendable () -> Bool)?>(nil)

    init(timing: HeartbeatTiming) {
        writeWindow = timing.writeWindowNanoseconds
        state = Mutex(State(lastRenewalIssued: Clock.monotonicNanoseconds, lost: nil))
    }

    /// Installs the renewal used when a writer finds the window expired (a starved heartbeat thread).
    func setRenewer(_ renew: @escaping @Sendable () -> Bool) { renewer.withLock { $0 = renew } }

    /// Records a successful renewal that was issued at `issued` (monotonic ns).
    func renewed(issuedAt issued: UInt64) {
        state.withLock { if issued > $0.lastRenewalIssued { $0.lastRenewalIssued = issued } }
    }

    /// Marks the slot as lost: nothing may be written any more.
    func markLost(_ reason: String) {
        state.withLock { if $0.lost == nil { $0.lost = reason } }
    }

    /// Until when (monotonic ns) writes are allowed: the last renewal + D − T; nil once the slot is lost.
    var writeDeadline: UInt64? {
        state.withLock { $0.lost == nil ? $0.lastRenewalIssued &+ writeWindow : nil }
    }

    /// Why the host lost its slot, if it did.
    var lostReason: String? { state.withLock { $0.lost } }

    /// Throws ``VMFSError/Code/fenced`` when a write now could land after others declared this host dead.
    ///
    /// When the window expired only because the heartbeat thread was starved (CPU load), the writer
    /// renews the slot itself first: a successful compare-and-write proves nobody took the slot,
    /// so the host is alive again. A lost slot stays lost.
    func checkWritable() throws(VMFSError) {
        for attempt in 0..<2 {
            let (issued, lost) = state.withLock { ($0.lastRenewalIssued, $0.lost) }
            if let lost { throw VMFSError(.fenced, "this host lost its heartbeat slot and may not write: \(lost)") }
            let age = Clock.monotonicNanoseconds &- issued
            if age < writeWindow { return }
            if attempt == 0, let renew = renewer.withLock({ $0 }), renew() { continue }
            throw VMFSError(.fenced, "heartbeat not renewed for \(age / 1_000_000) ms (limit \(writeWindow / 1_000_000) ms); writes are suspended")
        }
    }
}

/// A device whose writes are refused while the host is fenced, and anywhere at or past the
/// backup volume header: a mounted host writes only below it (the backup header itself is
/// written by `mkfs.vmfs` and `fsck.vmfs`), so a write there can only come from a bad offset.
final class FencedDevice: BlockDevice {
    let base: any BlockDevice
    let fence: FenceState
    /// The first byte a host may not write (the backup volume header).
    let writableEnd: UInt64

    init(base: any BlockDevice, fence: FenceState, writableEnd: UInt64) {
        self.base = base
        self.fence = fence
        self.writableEnd = writableEnd
    }

    private func check(_ offset: UInt64, _ length: UInt64) throws(VMFSError) {
        try fence.checkWritable()
        guard offset <= writableEnd, length <= writableEnd - offset else {
            throw VMFSError(.corrupt, "refusing to write \(length) bytes at byte \(offset): past the volume's last data block "
                            + "(the backup header starts at byte \(writableEnd))", location: .init(device: path, offset: offset))
        }
    }

    var path: String { base.path }
    var size: UInt64 { base.size }
    var alignment: Int { base.alignment }
    var usesDirectIO: Bool { base.usesDirectIO }
    var isReadOnly: Bool { base.isReadOnly }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try base.read(into: buffer, at: offset)
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try check(offset, UInt64(buffer.count))
        try base.write(buffer, at: offset)
    }

    func flush() throws(VMFSError) { try base.flush() }

    func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        try check(offset, length)
        try base.zero(offset: offset, length: length)
    }

    func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        try check(offset, length)
        try base.discard(offset: offset, length: length)
    }

    func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        for request in batch where request.kind == .write { try check(request.offset, UInt64(request.buffer.count)) }
        try base.perform(batch)
    }

    func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) { try base.lockRange(offset: offset, length: length) }
    func unlockRange(offset: UInt64, length: UInt64) { base.unlockRange(offset: offset, length: length) }
}
