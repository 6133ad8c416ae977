import Testing
import VMFSTestSupport
@testable import VMFSCore

/// Journal sequence numbers at the end of their range: a journal header or a committed
/// transaction carrying 2^64 − 1 must not trap any reader (mount, recovery, fsck), and fsck
/// reports and repairs it.
@Suite("Hostile journal sequences")
struct HostileJournalTests {
    private func check(_ device: MemoryBlockDevice, repair: Bool) -> CheckReport {
        var options = CheckOptions()
        options.repair = repair
        options.force = true
        return VolumeChecker(device: repair ? device : device.readOnlyView(), options: options).run()
    }

    /// The heartbeat slot (and so the journal) host `name` takes on a fresh volume.
    private func usedSlot(_ device: MemoryBlockDevice, host name: String) throws -> Int {
        let volume = try Volume.mount(device: device, options: hostOptions(name))
        let slot = try #require(volume.membership?.slot)
        try volume.unmount()
        return slot
    }

    @Test func aHeaderAtTheLastSequenceIsReportedSkippedAndRepaired() throws {
        let device = try makeMemoryVolume()
        let slot = try usedSlot(device, host: "h")
        try FieldRewriter(device: device).rewrite(.journalHeader(slot: slot), field: 40, to: UInt64.max)

        let found = check(device, repair: false)
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.structure == "journal \(slot) header" && $0.message.contains("\(UInt64.max)") },
                "\(found.problems)")
        // The host whose first choice it is mounts in another slot, and leaves that one alone.
        let volume = try Volume.mount(device: device, options: hostOptions("h"))
        #expect(volume.membership?.slot != slot)
        #expect(volume.eventLog.contains { $0.contains("journal \(slot)") }, "\(volume.eventLog)")
        try volume.unmount()
        #expect(try VolumeInspector(device: device.readOnlyView()).hosts(observeMilliseconds: 0).allSatisfy { $0.state == "free" })

        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
        let again = try Volume.mount(device: device, options: hostOptions("h"))
        #expect(again.membership?.slot == slot)
        try again.unmount()
    }

    @Test func aCommittedTransactionAtTheLastSequenceTrapsNoReader() throws {
        let device = try makeMemoryVolume()
        let header = try Volume.readHeader(device)
        let layout = header.layout
        let id = header.volumeID
        // A crashed host in slot 5 whose journal holds one committed transaction numbered 2^64 − 1.
        let slot = 5
        var crashed = HeartbeatSlot(index: slot)
        crashed.state = .live
        crashed.generation = 1
        crashed.owner = HostUUID.random()
        crashed.version = 1
        try device.write(bytes: crashed.encoded(volumeID: id, address: layout.heartbeatSlot(slot)), at: layout.heartbeatSlot(slot))
        let start = layout.journal(slot)
        let journalHeader = JournalHeader(slot: slot, startSequence: UInt64.max, resetBy: crashed.owner, version: 1)
        try device.write(bytes: journalHeader.encoded(volumeID: id, address: start), at: start)
        var image = FileDescriptorRecord(slot: 200)
        image.version = 1
        let home = layout.descriptor(200)
        let transaction = JournalTransaction(sequence: UInt64.max, checkpointedThrough: 0, commitTime: 0, ownerGeneration: 1,
                                             records: [(address: home, image: image.encoded(volumeID: id, address: home))])
        try device.write(bytes: transaction.encoded(volumeID: id, at: start + 4096), at: start + 4096)

        let found = check(device, repair: false)
        #expect(found.exitCode == 4)
        #expect(found.problems.contains { $0.structure.hasPrefix("journal \(slot)") }, "\(found.problems)")
        let volume = try Volume.mount(device: device, options: hostOptions("survivor"))
        #expect(throws: VMFSError.self) { try volume.recover(slot: slot, force: true) }
        try volume.unmount()
        #expect(check(device, repair: true).exitCode == 1)
        #expect(check(device, repair: false).exitCode == 0)
    }

    /// A journal whose sequence reached the end of its range starts again at 1 when reset.
    @Test func theNextSequenceAfterTheLastValidOneWraps() throws {
        var scan = JournalReplay.Scan(slot: 0)
        scan.header = JournalHeader(slot: 0, startSequence: JournalHeader.sequenceLimit - 1)
        #expect(scan.nextSequence == 1)
        scan.header = JournalHeader(slot: 0, startSequence: JournalHeader.sequenceLimit - 2)
        #expect(scan.nextSequence == JournalHeader.sequenceLimit - 1)
        scan.transactions = [JournalReplay.Transaction(sequence: JournalHeader.sequenceLimit - 1, checkpointedThrough: 0, sector: 1, records: [])]
        #expect(scan.nextSequence == 1)
    }
}
