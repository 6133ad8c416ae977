/// The atomic sector update as one SCSI COMPARE AND WRITE (ATS, VMFS5's way): the target
/// compares and writes the sector in one command, so nothing can come between.
///
/// A command retried after a dropped connection may find its own first attempt's data; the
/// device then reports success (it re-reads the sector, as ESXi does after an ATS miscompare).
final class CompareAndWriteSectorUpdate: AtomicSectorUpdate {
    let storage: any SCSIStorage
    /// Checked before every write (a fenced host may not write); nil for heartbeat slots.
    let fence: FenceState?
    let statistics: ClusterIOStatistics
    private let size = FormatConstants.sectorSize

    init(storage: any SCSIStorage, fence: FenceState?, statistics: ClusterIOStatistics) {
        self.storage = storage
        self.fence = fence
        self.statistics = statistics
    }

    func read(at address: UInt64) throws(VMFSError) -> [UInt8] {
        statistics.countRead()
        return try storage.read(count: size, at: address)
    }

    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        try fence?.checkWritable()
        let result = try storage.compareAndWrite(at: address, expected: expected, new: new)
        statistics.countUpdate(mismatch: result != .written)
        return result
    }
}
