import Synchronization

/// Appends this host's metadata transactions to its journal.
///
/// A commit writes one contiguous run — descriptor, sector images, commit record — and flushes
/// the device once. That flush also makes durable the home writes of earlier transactions, so
/// each descriptor records how far home locations are known durable ("checkpointed through");
/// replay starts after that point. When the journal is full it is flushed and restarted at its
/// first record sector with a new start sequence in its header.
final class JournalWriter: Sendable {
    private struct State {
        var nextSequence: UInt64
        var nextSector: Int
        var homeWrittenThrough: UInt64
        var commits = 0
        var resets = 0
    }

    let device: any BlockDevice
    let layout: VolumeLayout
    let volumeID: UInt64
    let slot: Int
    let host: HostUUID
    private let state: Mutex<State>
    let capacitySectors: Int

    /// The most records one transaction can carry in this journal.
    var maxRecords: Int { min(FormatConstants.maxRecordsPerTransaction, capacitySectors - 3) }

    init(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, slot: Int, host: HostUUID, startSequence: UInt64) {
        self.device = device
        self.layout = layout
        self.volumeID = volumeID
        self.slot = slot
        self.host = host
        capacitySectors = Int(layout.journalSize / UInt64(FormatConstants.sectorSize))
        let start = max(startSequence, 1)
        state = Mutex(State(nextSequence: start, nextSector: 1, homeWrittenThrough: start - 1))
    }

    private var start: UInt64 { layout.journal(slot) }

    /// Writes a fresh header so the journal starts empty at `nextSequence` (no flush).
    func writeHeader() throws(VMFSError) {
        let sequence = state.withLock { $0.nextSequence }
        let header = JournalHeader(slot: slot, startSequence: sequence, resetBy: host, version: sequence)
        try device.write(bytes: header.encoded(volumeID: volumeID, address: start), at: start)
        state.withLock { $0.nextSector = 1 }
    }

    /// Empties the journal durably (used at mount and after recovery).
    func reset() throws(VMFSError) {
        try writeHeader()
        try device.flush()
        state.withLock { $0.resets += 1 }
    }

    /// Commits `records` durably and returns the transaction's sequence number.
    func commit(records: [(address: UInt64, image: [UInt8])], ownerGeneration: UInt64) throws(VMFSError) -> UInt64 {
        precondition(records.count <= maxRecords, "transaction larger than the journal allows")
        let needed = records.count + 2
        if state.withLock({ $0.nextSector + needed > capacitySectors || $0.nextSequence >= JournalHeader.sequenceLimit }) {
            // Everything before is home and durable after this flush; restart the log (and the
            // sequence numbers, at the end of their range: a new log starts at sector 1, where
            // no stale transaction carries sequence 1).
            try device.flush()
            state.withLock { s in
                if s.nextSequence >= JournalHeader.sequenceLimit { s.nextSequence = 1 }
                s.homeWrittenThrough = s.nextSequence - 1
            }
            try writeHeader()
            state.withLock { $0.resets += 1 }
        }
        let (sequence, sector, checkpointed) = state.withLock { ($0.nextSequence, $0.nextSector, $0.homeWrittenThrough) }
        let address = start + UInt64(sector * FormatConstants.sectorSize)
        let transaction = JournalTransaction(sequence: sequence, checkpointedThrough: checkpointed,
                                             commitTime: Clock.wallNanoseconds, ownerGeneration: ownerGeneration,
                                             records: records)
        try device.write(bytes: transaction.encoded(volumeID: volumeID, at: address), at: address)
        try device.flush()
        state.withLock {
            $0.nextSequence += 1
            $0.nextSector += needed
            $0.commits += 1
        }
        return sequence
    }

    /// Notes that the home writes of every transaction up to `sequence` have completed.
    func homeWritten(through sequence: UInt64) {
        state.withLock { if sequence > $0.homeWrittenThrough { $0.homeWrittenThrough = sequence } }
    }

    /// Commits and journal restarts so far.
    var counts: (commits: Int, resets: Int) { state.withLock { ($0.commits, $0.resets) } }
}
