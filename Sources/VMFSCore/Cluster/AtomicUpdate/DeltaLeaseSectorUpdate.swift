/// The atomic sector update of heartbeat slots on a disk that only offers reads and writes: a
/// delta lease (Chockler–Malkhi, as sanlock's host_id leases).
///
/// Heartbeat slots cannot use Disk Paxos: a host claiming a slot has no slot yet, so no ballot
/// sector of its own. Instead a competing update (a claim, a recovery, freeing an abandoned
/// repair) reads the slot, writes the new image if it still holds the expected one, waits
/// ``delayNanoseconds`` = 2T and reads again: the update happened only if the slot still holds
/// its image. A competitor that read the old image before this write landed issues its own
/// write within T of that read (or gives up) and it lands within T more, so it is seen. An
/// update by the slot's owner (renewal, release, a replayer freeing what it replayed) needs no
/// delay: nobody else writes a slot its owner is renewing — others only take over a slot that
/// has been silent for D, after its owner stopped writing (D − T after its last renewal).
final class DeltaLeaseSectorUpdate: AtomicSectorUpdate {
    let device: any BlockDevice
    let statistics: ClusterIOStatistics
    let delayNanoseconds: UInt64
    /// A competing write is issued within this time of the read it is based on, or not at all.
    let issueLimitNanoseconds: UInt64
    private let size = FormatConstants.sectorSize
    private let local = KeyedLocks<UInt64>()

    init(device: any BlockDevice, statistics: ClusterIOStatistics, ioTimeoutMs: UInt32) {
        self.device = device
        self.statistics = statistics
        let t = UInt64(max(ioTimeoutMs, 10)) * 1_000_000
        delayNanoseconds = 2 * t
        issueLimitNanoseconds = t / 2
    }

    func read(at address: UInt64) throws(VMFSError) -> [UInt8] {
        statistics.countRead()
        return try device.read(count: size, at: address)
    }

    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        try compareAndWrite(at: address, expected: expected, new: new, ownerUpdate: false)
    }

    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8], ownerUpdate: Bool) throws(VMFSError) -> CompareAndWriteResult {
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        return try local.withLock(address) { () throws(VMFSError) -> CompareAndWriteResult in
            for _ in 0..<3 {
                let readAt = Clock.monotonicNanoseconds
                let current = try read(at: address)
                guard current == expected else {
                    statistics.countUpdate(mismatch: true)
                    return .mismatch(current: current)
                }
                if ownerUpdate {
                    try device.write(bytes: new, at: address)
                    statistics.countUpdate(mismatch: false)
                    return .written
                }
                // Too slow between the read and the write: a competitor may already have seen the
                // old image and decided; read again rather than write late.
                guard Clock.monotonicNanoseconds - readAt < issueLimitNanoseconds else { continue }
                try device.write(bytes: new, at: address)
                Clock.sleep(nanoseconds: delayNanoseconds)
                let after = try read(at: address)
                let result: CompareAndWriteResult = after == new ? .written : .mismatch(current: after)
                statistics.countUpdate(mismatch: result != .written)
                return result
            }
            throw VMFSError(.timedOut, "could not write the heartbeat slot at byte \(address) within \(issueLimitNanoseconds / 1_000_000) ms "
                            + "of reading it (the host is too slow for the volume's I/O timeout)", location: .init(device: device.path, offset: address))
        }
    }
}
