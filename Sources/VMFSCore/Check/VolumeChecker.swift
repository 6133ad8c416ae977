#if canImport(Glibc)
internal import Glibc
#endif

/// Options of a check.
public struct CheckOptions: Sendable {
    /// Repair what is wrong (`-y`); otherwise nothing is written (`-n`).
    public var repair = false
    /// Treat every host that still holds a heartbeat slot as dead without watching it.
    public var force = false
    /// How long to watch live-looking heartbeat slots; `nil` picks the hosts' own intervals.
    public var observeMilliseconds: UInt64?

    public init() {}
}

/// `fsck.vmfs`: checks every structure of a volume and, with ``CheckOptions/repair``, fixes it.
///
/// Order: volume header (and its backup), heartbeat slots and journals (a crashed host's journal
/// is replayed — into memory only without `repair`, so the rest is checked as it will be after
/// recovery), lock records, name table and file descriptors (with their mirrors), block maps,
/// and finally the allocation bitmaps against what the maps reference.
public final class VolumeChecker {
    let device: any BlockDevice
    let options: CheckOptions
    let progress: ((String, Double) -> Void)?
    private(set) var report: CheckReport
    private var view: any BlockDevice
    private var header: VolumeHeader!
    private var layout: VolumeLayout { header.layout }
    private var volumeID: UInt64 { header.volumeID }
    private var slots: [HeartbeatSlot?] = []
    private var aliveSlots: Set<Int> = []
    private var recoveredSlots: Set<Int> = []
    private var descriptors: [FileDescriptorRecord?] = Array(repeating: nil, count: FormatConstants.maxFiles)
    private var nameSectors: [NameTableSector] = []
    private let sectorSize = FormatConstants.sectorSize

    /// Creates a checker for `device` (open it read-only unless repairing).
    public init(device: any BlockDevice, options: CheckOptions, progress: ((String, Double) -> Void)? = nil) {
        self.device = device
        self.options = options
        self.progress = progress
        report = CheckReport(device: device.path)
        view = options.repair ? device : OverlayDevice(base: device)
    }

    /// Runs the check; never throws — operational failures end up in the report (exit code 8).
    public func run() -> CheckReport {
        do throws(VMFSError) {
            guard try checkHeader() else { return report }
            try checkHeartbeats()
            try checkLocks()
            try checkNames()
            try checkMaps()
            if options.repair { try device.flush() }
        } catch {
            report.operationalError = error.description
        }
        progress?("done", 1)
        if options.repair && report.problems.contains(where: { $0.repaired }) && report.operationalError == nil {
            // Verify the repair with a read-only pass; anything left is reported as unrepaired.
            var verify = CheckOptions()
            verify.force = true
            let second = VolumeChecker(device: device, options: verify).run()
            for problem in second.problems {
                report.problems.append(CheckReport.Problem(structure: problem.structure, offset: problem.offset,
                                                           message: "still wrong after repair: \(problem.message)", repaired: false))
            }
        }
        return report
    }

    // MARK: Recording

    /// Records a problem that `repair` fixes when repairing.
    private func problem(_ structure: String, offset: UInt64?, _ message: String, repair: () throws(VMFSError) -> Void) throws(VMFSError) {
        var repaired = false
        if options.repair {
            try repair()
            repaired = true
        }
        report.problems.append(CheckReport.Problem(structure: structure, offset: offset, message: message, repaired: repaired))
    }

    /// Records a problem no repair exists for.
    private func problem(_ structure: String, offset: UInt64?, _ message: String) {
        report.problems.append(CheckReport.Problem(structure: structure, offset: offset, message: message, repaired: false))
    }

    private func note(_ text: String) { report.notes.append(text) }

    private func read(_ address: UInt64, count: Int? = nil) throws(VMFSError) -> [UInt8] {
        try view.read(count: count ?? sectorSize, at: address)
    }

    /// Writes a repaired sector (and its mirror) with a version above both old copies.
    private func writeRepaired(_ address: UInt64, _ make: (UInt64) -> [UInt8]) throws(VMFSError) {
        var version = SectorCodec.version(of: try device.read(count: sectorSize, at: address))
        if let mirror = layout.mirror(of: address) {
            version = max(version, SectorCodec.version(of: try device.read(count: sectorSize, at: mirror)))
        }
        let image = make(version &+ 1)
        try device.write(bytes: image, at: address)
        if let mirror = layout.mirror(of: address) { try device.write(bytes: image, at: mirror) }
    }

    // MARK: Header

    private func checkHeader() throws(VMFSError) -> Bool {
        progress?("volume header", 0)
        guard device.size >= UInt64(2 * sectorSize) else {
            report.operationalError = "\(device.path) is \(device.size) bytes: too small to hold a VMFS volume"
            return false
        }
        let primaryBytes = try device.read(count: sectorSize, at: 0)
        let backupOffset = (device.size / UInt64(sectorSize) - 1) * UInt64(sectorSize)
        do {
            header = try VolumeHeader.decode(primaryBytes, offset: 0, device: device.path)
        } catch {
            if let backup = try? VolumeHeader.decode(try device.read(count: sectorSize, at: backupOffset), offset: backupOffset) {
                header = backup
                try problem("volume header", offset: error.location?.offset ?? 0, "\(error.message); the backup header is intact") {
                    () throws(VMFSError) in try device.write(bytes: backup.encoded(), at: 0)
                }
            } else if error.code == .notVMFS || error.code == .futureVersion {
                report.operationalError = error.description
                return false
            } else {
                report.problems.append(CheckReport.Problem(structure: "volume header", offset: error.location?.offset ?? 0,
                                                           message: "\(error.message), and no valid backup header was found", repaired: false))
                return false
            }
        }
        guard device.size >= layout.deviceSize else {
            report.problems.append(CheckReport.Problem(
                structure: "device", offset: device.size,
                message: "the device is \(device.size) bytes but the volume was made for \(layout.deviceSize) bytes: it is truncated",
                repaired: false))
            return false
        }
        let backupBytes = try device.read(count: sectorSize, at: layout.backupHeaderOffset)
        if backupBytes != header.encoded() {
            let reason = (try? VolumeHeader.decode(backupBytes, offset: layout.backupHeaderOffset)) == nil
                ? "is missing or corrupt" : "differs from the primary header"
            let image = header.encoded()
            try problem("backup volume header", offset: layout.backupHeaderOffset, "the backup volume header \(reason)") { () throws(VMFSError) in
                try device.write(bytes: image, at: layout.backupHeaderOffset)
            }
        }
        return true
    }

    // MARK: Heartbeats and journals

    private func readSlots() throws(VMFSError) -> [[UInt8]] {
        let region = try device.read(count: Int(layout.maxHosts) * sectorSize, at: layout.heartbeatOffset)
        return (0..<Int(layout.maxHosts)).map { Array(region[($0 * sectorSize)..<(($0 + 1) * sectorSize)]) }
    }

    private func checkHeartbeats() throws(VMFSError) {
        progress?("heartbeats and journals", 0.05)
        let raws = try readSlots()
        slots = []
        for (index, raw) in raws.enumerated() {
            let address = layout.heartbeatSlot(index)
            do {
                slots.append(try HeartbeatSlot.decode(raw, index: index, volumeID: volumeID, address: address))
            } catch {
                slots.append(nil)
                let version = SectorCodec.version(of: raw)
                let generation = ByteReader(raw).u64(40)
                try problem("heartbeat slot \(index)", offset: address, error.message) { () throws(VMFSError) in
                    var free = HeartbeatSlot(index: index)
                    free.generation = generation &+ 1
                    free.version = version &+ 1
                    try device.write(bytes: free.encoded(volumeID: volumeID, address: address), at: address)
                }
            }
        }
        // Watch the slots that claim a live host: a live host keeps changing its slot.
        let claimed = slots.compactMap { $0 }.filter { $0.state != .free }
        if !claimed.isEmpty && !options.force {
            let watch: UInt64
            if let given = options.observeMilliseconds {
                watch = given
            } else if options.repair {
                watch = UInt64(claimed.map { $0.deadIntervalMs > 0 ? $0.deadIntervalMs : header.deadIntervalMs }.max() ?? header.deadIntervalMs)
            } else {
                watch = min(UInt64(claimed.map { max($0.renewIntervalMs, 10) }.max() ?? 1000) * 2, 10_000)
            }
            progress?("watching \(claimed.count) heartbeat slot(s) for \(watch) ms", 0.05)
            let deadline = Clock.monotonicNanoseconds + watch * 1_000_000
            while Clock.monotonicNanoseconds < deadline && aliveSlots.count < claimed.count {
                Clock.sleep(milliseconds: min(50, watch))
                let now = try readSlots()
                for slot in claimed where now[slot.index] != raws[slot.index] { aliveSlots.insert(slot.index) }
            }
        }
        if options.repair && !aliveSlots.isEmpty {
            let names = aliveSlots.sorted().map { "slot \($0) (host \(slots[$0]?.owner.description ?? "?") \(slots[$0]?.ownerName ?? ""))" }
            throw VMFSError(.busy, "the volume is in use by live hosts: \(names.joined(separator: ", ")); "
                            + "unmount it everywhere before repairing (or use --force if those hosts are really down)")
        }
        for index in aliveSlots.sorted() {
            note("heartbeat slot \(index): host \(slots[index]?.owner.description ?? "?") (\(slots[index]?.ownerName ?? "")) is alive; "
                 + "structures it is changing may look inconsistent")
        }
        for (index, slot) in slots.enumerated() {
            progress?("heartbeats and journals", 0.05 + 0.1 * Double(index) / Double(max(slots.count, 1)))
            try checkJournal(slot: index, owner: slot)
        }
    }

    private func checkJournal(slot index: Int, owner: HeartbeatSlot?) throws(VMFSError) {
        let address = layout.journal(index)
        let scan: JournalReplay.Scan
        do {
            scan = try JournalReplay.scan(device: view, layout: layout, volumeID: volumeID, slot: index)
        } catch {
            if aliveSlots.contains(index) { throw error }
            let next = try highestJournalSequence(index) + 1
            try problem("journal \(index) header", offset: address, error.message) { () throws(VMFSError) in
                try JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: index, host: .zero, startSequence: next).reset()
            }
            if let owner, owner.state != .free { try releaseSlot(index, owner: owner, replayed: 0) }
            return
        }
        if aliveSlots.contains(index) { return }
        let crashed = owner.map { $0.state != .free } ?? false
        let pending = scan.pending
        if let damage = scan.damage { note("journal \(index): \(damage) (the log ends there)") }
        guard crashed || !pending.isEmpty else { return }
        // Replay: for real with repair, into the overlay without.
        let result = try JournalReplay.replay(scan, device: view, layout: layout, volumeID: volumeID)
        report.replayedTransactions += result.transactions
        if crashed, let owner {
            let who = "host \(owner.owner) (\(owner.ownerName), slot \(index), generation \(owner.generation))"
            let message = owner.state == .replaying
                ? "\(who) was being recovered when its recoverer stopped; \(pending.count) journal transaction(s) to replay"
                : "\(who) holds the volume but is not heartbeating and was not recovered; \(pending.count) journal transaction(s) to replay"
            try problem("heartbeat slot \(index)", offset: layout.heartbeatSlot(index), message) { () throws(VMFSError) in
                try JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: index, host: .zero,
                                  startSequence: scan.nextSequence).reset()
                try releaseSlot(index, owner: owner, replayed: result.transactions)
            }
            recoveredSlots.insert(index)
        } else {
            try problem("journal \(index)", offset: address,
                        "journal of free heartbeat slot \(index) holds \(pending.count) transaction(s) that were never replayed") { () throws(VMFSError) in
                try JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: index, host: .zero,
                                  startSequence: scan.nextSequence).reset()
            }
        }
    }

    /// Frees a crashed host's slot and every lock of its incarnation (repair mode).
    private func releaseSlot(_ index: Int, owner: HeartbeatSlot, replayed: Int) throws(VMFSError) {
        let generation = owner.state == .replaying ? owner.recoveringGeneration : owner.generation
        var free = owner
        free.state = .free
        free.generation = owner.generation &+ 1
        free.version = owner.version &+ 1
        free.stamp = owner.stamp &+ 1
        let address = layout.heartbeatSlot(index)
        try device.write(bytes: free.encoded(volumeID: volumeID, address: address), at: address)
        slots[index] = free
        try clearLocks(heldBy: index, generation: generation)
        if owner.state == .replaying { try clearLocks(heldBy: index, generation: owner.generation) }
    }

    private func clearLocks(heldBy slot: Int, generation: UInt64) throws(VMFSError) {
        let count = Int(layout.lockCount)
        let region = try device.read(count: count * sectorSize, at: layout.lockOffset)
        for index in 0..<count {
            let raw = Array(region[(index * sectorSize)..<((index + 1) * sectorSize)])
            if ByteReader(raw).isAllZero { continue }
            let address = layout.lockRecord(index)
            guard var record = try? LockRecord.decode(raw, index: index, kind: LockManager.kind(ofLock: index, layout: layout),
                                                      volumeID: volumeID, address: address),
                  record.holders.contains(where: { $0.slot == slot && $0.generation == generation }) else { continue }
            record.holders.removeAll { $0.slot == slot && $0.generation == generation }
            if record.holders.isEmpty { record.mode = .free; record.releaseRequested = false }
            record.version &+= 1
            try device.write(bytes: record.encoded(volumeID: volumeID, address: address), at: address)
        }
    }

    private func highestJournalSequence(_ slot: Int) throws(VMFSError) -> UInt64 {
        let start = layout.journal(slot)
        let region = try device.read(count: Int(layout.journalSize), at: start)
        var highest: UInt64 = 0
        for i in 1..<(Int(layout.journalSize) / sectorSize) {
            let bytes = Array(region[(i * sectorSize)..<((i + 1) * sectorSize)])
            if case .valid(let r, _)? = try? SectorCodec.open(bytes, magic: .journalDescriptor, volumeID: volumeID,
                                                               address: start + UInt64(i * sectorSize)) {
                highest = max(highest, r.u64(32))
            }
        }
        let header = ByteReader(Array(region[0..<sectorSize]))
        return max(highest, header.u64(40))
    }

    // MARK: Locks

    private func checkLocks() throws(VMFSError) {
        progress?("lock records", 0.2)
        let count = Int(layout.lockCount)
        let region = try device.read(count: count * sectorSize, at: layout.lockOffset)
        for index in 0..<count {
            let raw = Array(region[(index * sectorSize)..<((index + 1) * sectorSize)])
            if ByteReader(raw).isAllZero { continue }
            let address = layout.lockRecord(index)
            let kind = LockManager.kind(ofLock: index, layout: layout)
            let record: LockRecord
            do {
                record = try LockRecord.decode(raw, index: index, kind: kind, volumeID: volumeID, address: address)
            } catch {
                let version = SectorCodec.version(of: raw)
                try problem("lock record \(index)", offset: address, error.message) { () throws(VMFSError) in
                    var free = LockRecord(index: index, kind: kind)
                    free.version = version &+ 1
                    try device.write(bytes: free.encoded(volumeID: volumeID, address: address), at: address)
                }
                continue
            }
            var stale: [LockRecord.Holder] = []
            for holder in record.holders {
                if aliveSlots.contains(holder.slot), let slot = slots[holder.slot], slot.generation == holder.generation { continue }
                if recoveredSlots.contains(holder.slot) && !options.repair { continue }  // reported with its slot
                if holder.slot < slots.count, let slot = slots[holder.slot], slot.state == .live, slot.generation == holder.generation,
                   options.force == false && !options.repair {
                    continue
                }
                stale.append(holder)
            }
            guard !stale.isEmpty else { continue }
            let who = stale.map { "host \($0.host) (slot \($0.slot), generation \($0.generation))" }.joined(separator: ", ")
            try problem("lock record \(index)", offset: address, "\(record.mode) lock held by \(who), whose heartbeat is gone") { () throws(VMFSError) in
                var fixed = record
                fixed.holders.removeAll { h in stale.contains(h) }
                if fixed.holders.isEmpty { fixed.mode = .free; fixed.releaseRequested = false }
                fixed.version &+= 1
                try device.write(bytes: fixed.encoded(volumeID: volumeID, address: address), at: address)
            }
        }
    }

    // MARK: Mirrored sectors

    /// Reads a mirrored sector, reconciles its two copies, and returns the decoded value.
    private func mirrored<T>(_ address: UInt64, structure: String,
                             decode: ([UInt8]) throws(VMFSError) -> T) throws(VMFSError) -> T? {
        let mirror = layout.mirror(of: address)!
        let primary = try read(address)
        let copy = try read(mirror)
        let p = Result { () throws(VMFSError) -> T in try decode(primary) }
        let m = Result { () throws(VMFSError) -> T in try decode(copy) }
        switch (p, m) {
        case (.success(let value), .success):
            if primary != copy {
                let newer = SectorCodec.version(of: copy) > SectorCodec.version(of: primary) ? copy : primary
                let which = newer == copy ? "mirror" : "primary"
                try problem(structure, offset: address, "the primary and mirror copies differ; keeping the newer \(which)") { () throws(VMFSError) in
                    try device.write(bytes: newer, at: address)
                    try device.write(bytes: newer, at: mirror)
                }
                if newer == copy, case .success(let fromMirror) = m { return fromMirror }
            }
            return value
        case (.success(let value), .failure(let error)):
            try problem(structure, offset: mirror, "mirror copy: \(error.message); the primary is intact") { () throws(VMFSError) in
                try device.write(bytes: primary, at: mirror)
            }
            return value
        case (.failure(let error), .success(let value)):
            try problem(structure, offset: address, "\(error.message); the mirror copy is intact") { () throws(VMFSError) in
                try device.write(bytes: copy, at: address)
            }
            return value
        case (.failure(let error), .failure):
            problem(structure, offset: address, "\(error.message), and the mirror copy is damaged too")
            return nil
        }
    }

    // MARK: Names and descriptors

    private func checkNames() throws(VMFSError) {
        progress?("name table and file descriptors", 0.3)
        nameSectors = []
        for index in 0..<FormatConstants.nameTableSectors {
            let address = layout.nameTableSector(index)
            let sector = try mirrored(address, structure: "name table sector \(index)") { (bytes) throws(VMFSError) in
                try NameTableSector.decode(bytes, index: index, volumeID: volumeID, address: address)
            }
            if sector == nil && options.repair {
                try writeRepaired(address) { version in
                    var empty = NameTableSector(index: index)
                    empty.version = version
                    return empty.encoded(volumeID: volumeID, address: address)
                }
                report.problems[report.problems.count - 1].repaired = true
                report.problems[report.problems.count - 1].message += "; its names are lost (their files are reconnected as lost+found.N)"
            }
            nameSectors.append(sector ?? NameTableSector(index: index))
        }
        for slot in 0..<FormatConstants.maxFiles {
            let address = layout.descriptor(slot)
            let descriptor = try mirrored(address, structure: "file descriptor \(slot)") { (bytes) throws(VMFSError) in
                try FileDescriptorRecord.decode(bytes, slot: slot, volumeID: volumeID, address: address)
            }
            if descriptor == nil && options.repair {
                try writeRepaired(address) { version in
                    var free = FileDescriptorRecord(slot: slot)
                    free.version = version
                    return free.encoded(volumeID: volumeID, address: address)
                }
                report.problems[report.problems.count - 1].repaired = true
                report.problems[report.problems.count - 1].message += "; the file in this slot is lost"
            }
            descriptors[slot] = descriptor
        }
        // Name entries: unique names, unique slots, pointing at live descriptors.
        var names: Set<String> = []
        var named: Set<Int> = []
        for (s, sector) in nameSectors.enumerated() {
            for (e, entry) in sector.entries.enumerated() {
                guard let entry else { continue }
                let address = layout.nameTableSector(s)
                var reason: String?
                if s * FormatConstants.nameEntriesPerSector + e >= FormatConstants.maxFiles {
                    reason = "entry \(e) lies past the 255-file table"
                } else if names.contains(entry.name) {
                    reason = "name '\(entry.name)' appears twice"
                } else if named.contains(entry.slot) {
                    reason = "file slot \(entry.slot) has two names ('\(entry.name)' is dropped)"
                } else if let d = descriptors[entry.slot], !d.inUse || d.generation != entry.generation {
                    reason = "'\(entry.name)' names file slot \(entry.slot) generation \(entry.generation), which is "
                        + (d.inUse ? "generation \(d.generation)" : "not in use")
                } else if descriptors[entry.slot] == nil {
                    reason = "'\(entry.name)' names file slot \(entry.slot), whose descriptor is lost"
                }
                if let reason {
                    try problem("name table sector \(s)", offset: address + UInt64(FormatConstants.nameEntriesOffset + e * FormatConstants.nameEntrySize),
                                reason) { () throws(VMFSError) in
                        nameSectors[s].entries[e] = nil
                        let updated = nameSectors[s]
                        try writeRepaired(address) { version in
                            var copy = updated
                            copy.version = version
                            return copy.encoded(volumeID: volumeID, address: address)
                        }
                    }
                    continue
                }
                names.insert(entry.name)
                named.insert(entry.slot)
            }
        }
        report.files = named.count
        // Descriptors in use must be named, or be orphans whose owner will free them.
        for slot in 0..<FormatConstants.maxFiles {
            guard let descriptor = descriptors[slot], descriptor.inUse else { continue }
            let address = layout.descriptor(slot)
            if descriptor.mode & UInt32(S_IFMT) != UInt32(S_IFREG) {
                try problem("file descriptor \(slot)", offset: address + 40, "mode 0o\(String(descriptor.mode, radix: 8)) is not a regular file") { () throws(VMFSError) in
                    descriptors[slot]?.mode = UInt32(S_IFREG) | (descriptor.mode & 0o7777)
                    try rewriteDescriptor(slot)
                }
            }
            if descriptor.size > layout.maxFileSize {
                problem("file descriptor \(slot)", offset: address + 56, "size \(descriptor.size) exceeds the maximum file size")
            }
            if named.contains(slot) {
                if descriptor.isOrphan {
                    try problem("file descriptor \(slot)", offset: address + 34, "named file is marked unlinked") { () throws(VMFSError) in
                        descriptors[slot]?.isOrphan = false
                        try rewriteDescriptor(slot)
                    }
                }
                continue
            }
            if descriptor.isOrphan {
                if lockHolderAlive(slot) {
                    note("file slot \(slot) was unlinked while open on a live host; it is freed when closed")
                    continue
                }
                try problem("file descriptor \(slot)", offset: address, "unlinked file '\(descriptor.nameHint)' was never freed") { () throws(VMFSError) in
                    descriptors[slot] = freeDescriptor(slot, generation: descriptor.generation)
                    try rewriteDescriptor(slot)
                }
                if !options.repair { continue }
                continue
            }
            let lostName = "lost+found.\(slot)"
            try problem("file descriptor \(slot)", offset: address, "file '\(descriptor.nameHint)' in slot \(slot) has no name") { () throws(VMFSError) in
                guard let position = freeNamePosition() else {
                    throw VMFSError(.noSpace, "no free name entry to reconnect file slot \(slot)")
                }
                let (s, e) = position
                nameSectors[s].entries[e] = NameEntry(name: lostName, slot: slot, generation: descriptor.generation, created: Clock.wallNanoseconds)
                let sector = nameSectors[s]
                let sectorAddress = layout.nameTableSector(s)
                try writeRepaired(sectorAddress) { version in
                    var copy = sector
                    copy.version = version
                    return copy.encoded(volumeID: volumeID, address: sectorAddress)
                }
            }
            if options.repair { report.files += 1 }
        }
    }

    private func freeDescriptor(_ slot: Int, generation: UInt32) -> FileDescriptorRecord {
        var free = FileDescriptorRecord(slot: slot)
        free.generation = generation
        return free
    }

    private func freeNamePosition() -> (Int, Int)? {
        for (s, sector) in nameSectors.enumerated() {
            for (e, entry) in sector.entries.enumerated() where entry == nil && s * FormatConstants.nameEntriesPerSector + e < FormatConstants.maxFiles {
                return (s, e)
            }
        }
        return nil
    }

    private func rewriteDescriptor(_ slot: Int) throws(VMFSError) {
        guard let descriptor = descriptors[slot] else { return }
        let address = layout.descriptor(slot)
        try writeRepaired(address) { version in
            var copy = descriptor
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    private func lockHolderAlive(_ slot: Int) -> Bool {
        let index = FormatConstants.descriptorLockIndex(slot: slot)
        guard let raw = try? device.read(count: sectorSize, at: layout.lockRecord(index)),
              let record = try? LockRecord.decode(raw, index: index, kind: .fileDescriptor, volumeID: volumeID,
                                                  address: layout.lockRecord(index)) else { return false }
        return record.holders.contains { aliveSlots.contains($0.slot) && slots[$0.slot]?.generation == $0.generation }
    }

    // MARK: Block maps and bitmaps

    private struct Bitset {
        var words: [UInt64]
        init(count: UInt64) { words = Array(repeating: 0, count: Int((count + 63) / 64)) }
        func contains(_ i: UInt64) -> Bool { words[Int(i / 64)] & (1 << (i % 64)) != 0 }
        mutating func insert(_ i: UInt64) { words[Int(i / 64)] |= 1 << (i % 64) }
    }

    private func checkMaps() throws(VMFSError) {
        var usedBlocks = Bitset(count: layout.totalBlocks)
        var usedNodes = Bitset(count: UInt64(layout.pointerNodeCount))
        usedBlocks.insert(0)
        usedNodes.insert(0)
        for slot in 0..<FormatConstants.maxFiles {
            progress?("block maps", 0.4 + 0.4 * Double(slot) / Double(FormatConstants.maxFiles))
            guard var descriptor = descriptors[slot], descriptor.inUse, !descriptor.isInline else { continue }
            var changed = false
            var dataCount: UInt64 = 0
            var nodeCount: UInt64 = 0
            var highest: UInt64 = 0
            var writtenBeyondEnd = 0
            let structure = "file descriptor \(slot)"
            let address = layout.descriptor(slot)
            let blocksInSize = (descriptor.size + UInt64(layout.blockSize) - 1) / UInt64(layout.blockSize)

            // Returns false when the entry must be cleared.
            func visitData(_ entry: UInt32, fileBlock: UInt64) throws(VMFSError) -> Bool {
                let number = UInt64(entry & ~FormatConstants.unwrittenFlag)
                if number == 0 || number >= layout.totalBlocks {
                    try problem(structure, offset: address, "file block \(fileBlock) points at data block \(number), outside the volume") {}
                    return false
                }
                if usedBlocks.contains(number) {
                    try problem(structure, offset: address, "file block \(fileBlock) uses data block \(number), which another file block already uses") {}
                    return false
                }
                usedBlocks.insert(number)
                dataCount += 1
                highest = max(highest, fileBlock + 1)
                if fileBlock >= blocksInSize && entry & FormatConstants.unwrittenFlag == 0 { writtenBeyondEnd += 1 }
                return true
            }

            func visitNode(_ number: UInt32, level: Int, base: UInt64) throws(VMFSError) -> PointerNode? {
                let nodeStructure = "pointer block \(number) of file slot \(slot)"
                guard number > 0, number < layout.pointerNodeCount else {
                    try problem(structure, offset: address, "points at pointer block \(number), outside the volume") {}
                    return nil
                }
                if usedNodes.contains(UInt64(number)) {
                    try problem(structure, offset: address, "pointer block \(number) is referenced twice") {}
                    return nil
                }
                let nodeAddress = layout.pointerNode(number)
                guard var node = try mirrored(nodeAddress, structure: nodeStructure, decode: { (bytes) throws(VMFSError) -> PointerNode in
                    try PointerNode.decode(bytes, number: number, volumeID: volumeID, address: nodeAddress)
                }) else {
                    report.problems[report.problems.count - 1].repaired = options.repair
                    report.problems[report.problems.count - 1].message += "; the blocks it mapped become a hole"
                    return nil
                }
                guard node.level == level, node.ownerSlot == slot, node.ownerGeneration == descriptor.generation else {
                    try problem(nodeStructure, offset: nodeAddress, "belongs to slot \(node.ownerSlot) generation \(node.ownerGeneration) level \(node.level), "
                                + "not to this file (generation \(descriptor.generation)) at level \(level)") {}
                    return nil
                }
                usedNodes.insert(UInt64(number))
                nodeCount += 1
                var nodeChanged = false
                let span = BlockMapGeometry.span(ofLevel: level)
                for index in 0..<FormatConstants.pointerEntries where node.entries[index] != 0 {
                    let childBase = base + UInt64(index) * span
                    if level == 0 {
                        if try !visitData(node.entries[index], fileBlock: childBase) { node.entries[index] = 0; nodeChanged = true }
                    } else if try visitNode(node.entries[index], level: level - 1, base: childBase) == nil {
                        node.entries[index] = 0
                        nodeChanged = true
                    }
                }
                if nodeChanged && options.repair {
                    let fixed = node
                    try writeRepaired(nodeAddress) { version in
                        var copy = fixed
                        copy.version = version
                        return copy.encoded(volumeID: volumeID, address: nodeAddress)
                    }
                }
                return node
            }

            for index in 0..<FormatConstants.directPointers where descriptor.direct[index] != 0 {
                if try !visitData(descriptor.direct[index], fileBlock: UInt64(index)) {
                    descriptor.direct[index] = 0
                    changed = true
                }
            }
            for depth in 1...3 where descriptor.indirect[depth - 1] != 0 {
                if try visitNode(descriptor.indirect[depth - 1], level: depth - 1, base: BlockMapGeometry.firstBlock(ofDepth: depth)) == nil {
                    descriptor.indirect[depth - 1] = 0
                    changed = true
                }
            }
            if descriptor.allocatedBlocks != dataCount || descriptor.pointerBlocks != nodeCount {
                try problem(structure, offset: address + 64, "counts \(descriptor.allocatedBlocks) data and \(descriptor.pointerBlocks) pointer blocks, "
                            + "but its map holds \(dataCount) and \(nodeCount)") {}
                descriptor.allocatedBlocks = dataCount
                descriptor.pointerBlocks = nodeCount
                changed = true
            }
            if descriptor.mappedEnd < highest {
                try problem(structure, offset: address + 112, "mapped end \(descriptor.mappedEnd) is below its highest mapped block \(highest)") {}
                descriptor.mappedEnd = highest
                changed = true
            }
            if writtenBeyondEnd > 0 {
                note("file slot \(slot): \(writtenBeyondEnd) written block(s) past the end of the file (an interrupted truncate; freed when the file grows)")
            }
            if changed && options.repair {
                descriptors[slot] = descriptor
                try rewriteDescriptor(slot)
            }
            report.usedBlocks += dataCount
            report.usedPointerBlocks += nodeCount
        }
        try checkBitmaps(pool: .blocks, used: usedBlocks)
        try checkBitmaps(pool: .pointers, used: usedNodes)
    }

    private func checkBitmaps(pool: ClusterBitmap.Pool, used: Bitset) throws(VMFSError) {
        let clusters = Int(pool == .blocks ? layout.blockClusterCount : layout.pointerClusterCount)
        let perCluster = UInt64(pool == .blocks ? layout.blocksPerCluster : layout.nodesPerCluster)
        let total = pool == .blocks ? layout.totalBlocks : UInt64(layout.pointerNodeCount)
        let noun = pool == .blocks ? "block" : "pointer-block"
        for c in 0..<clusters {
            progress?("\(noun) bitmaps", 0.8 + 0.2 * Double(c) / Double(max(clusters, 1)) * (pool == .blocks ? 0.5 : 1))
            let first = UInt64(c) * perCluster
            let count = Int(min(perCluster, total - min(first, total)))
            let address = pool == .blocks ? layout.blockBitmap(c) : layout.pointerBitmap(c)
            var expected = ClusterBitmap(pool: pool, index: c, firstItem: first, itemCount: count)
            for i in 0..<count where used.contains(first + UInt64(i)) { expected.set(i, allocated: true) }
            let structure = "\(noun) cluster \(c) bitmap"
            let raw = try read(address)
            let onDisk: ClusterBitmap
            do {
                onDisk = try ClusterBitmap.decode(raw, pool: pool, index: c, firstItem: first, itemCount: count,
                                                  volumeID: volumeID, address: address)
            } catch {
                try problem(structure, offset: address, "\(error.message); rebuilt from the block maps") { () throws(VMFSError) in
                    try writeBitmap(expected, at: address)
                }
                continue
            }
            guard onDisk.bits != expected.bits else { continue }
            var leaked = 0
            var missing = 0
            var examples: [UInt64] = []
            for i in 0..<count {
                let disk = onDisk.isAllocated(i)
                let want = expected.isAllocated(i)
                if disk && !want { leaked += 1 }
                if !disk && want { missing += 1 }
                if disk != want && examples.count < 4 { examples.append(first + UInt64(i)) }
            }
            var parts: [String] = []
            if leaked > 0 { parts.append("\(leaked) \(noun)(s) marked allocated but used by no file (leaked)") }
            if missing > 0 { parts.append("\(missing) \(noun)(s) used by files but marked free") }
            try problem(structure, offset: address, parts.joined(separator: "; ") + " (e.g. \(examples.map(String.init).joined(separator: ", ")))") {
                () throws(VMFSError) in try writeBitmap(expected, at: address)
            }
        }
    }

    private func writeBitmap(_ bitmap: ClusterBitmap, at address: UInt64) throws(VMFSError) {
        try writeRepaired(address) { version in
            var copy = bitmap
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }
}
