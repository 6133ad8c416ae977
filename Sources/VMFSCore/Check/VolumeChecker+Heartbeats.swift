/// fsck: heartbeat slots, journals (replay of crashed hosts) and lock records.
extension VolumeChecker {
    // MARK: Heartbeats and journals

    func readSlots() throws(VMFSError) -> [[UInt8]] {
        let region = try device.read(count: Int(layout.maxHosts) * sectorSize, at: layout.heartbeatOffset)
        return (0..<Int(layout.maxHosts)).map { Array(region[($0 * sectorSize)..<(($0 + 1) * sectorSize)]) }
    }

    func checkHeartbeats() throws(VMFSError) {
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
        let claimed = slots.compactMap { $0 }.filter { $0.state != .free && $0.index != ownSlot }
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
                try options.interruption.sleep(milliseconds: min(50, watch), while: "watching \(claimed.count) heartbeat slot(s) for live hosts")
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
        for (index, slot) in slots.enumerated() where index != ownSlot {
            try checkInterruption()
            progress?("heartbeats and journals", 0.05 + 0.1 * Double(index) / Double(max(slots.count, 1)))
            try checkJournal(slot: index, owner: slot)
        }
    }

    func checkJournal(slot index: Int, owner: HeartbeatSlot?) throws(VMFSError) {
        let address = layout.journal(index)
        let scan: JournalReplay.Scan
        do {
            scan = try JournalReplay.scan(device: view, layout: layout, volumeID: volumeID, slot: index)
        } catch {
            if aliveSlots.contains(index) { throw error }
            let next = JournalHeader.sequence(after: try highestJournalSequence(index))
            let crashed = owner.map { $0.state != .free } ?? false
            let message = error.message + (crashed ? "; the transactions of the host in slot \(index) cannot be replayed" : "")
            try problem("journal \(index) header", offset: address, message) { () throws(VMFSError) in
                try JournalWriter(device: device, layout: layout, volumeID: volumeID, slot: index, host: .zero, startSequence: next).reset()
                if let owner, crashed { try releaseSlot(index, owner: owner, replayed: 0) }
            }
            return
        }
        if aliveSlots.contains(index) { return }
        let crashed = owner.map { $0.state != .free } ?? false
        let pending = scan.pending
        if let damage = scan.damage { note("journal \(index): \(damage) (the log ends there)") }
        guard crashed || !pending.isEmpty else { return }
        // Replay: for real with repair, into the overlay without.
        if options.repair { try beginRepairing() }
        let result = try JournalReplay.replay(scan, device: view, layout: layout, volumeID: volumeID)
        report.replayedTransactions += result.transactions
        if crashed, let owner {
            let who = "host \(owner.owner) (\(owner.ownerName), slot \(index), generation \(owner.generation))"
            let message: String
            switch owner.state {
            case .replaying:
                message = "\(who) was being recovered when its recoverer stopped; \(pending.count) journal transaction(s) to replay"
            case .maintenance:
                message = "a repair by \(who) was interrupted; hosts refuse to mount until it is finished"
            default:
                message = "\(who) holds the volume but is not heartbeating and was not recovered; \(pending.count) journal transaction(s) to replay"
            }
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
    func releaseSlot(_ index: Int, owner: HeartbeatSlot, replayed: Int) throws(VMFSError) {
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

    /// Calls `body` with every lock record sector that is not pristine (index, address, bytes),
    /// read from the device in one I/O.
    func forEachLockSector(_ body: (Int, UInt64, [UInt8]) throws(VMFSError) -> Void) throws(VMFSError) {
        let count = Int(layout.lockCount)
        let region = try device.read(count: count * sectorSize, at: layout.lockOffset)
        for index in 0..<count {
            try checkInterruption()
            let raw = Array(region[(index * sectorSize)..<((index + 1) * sectorSize)])
            if ByteReader(raw).isAllZero { continue }
            try body(index, layout.lockRecord(index), raw)
        }
    }

    func clearLocks(heldBy slot: Int, generation: UInt64) throws(VMFSError) {
        try forEachLockSector { (index, address, raw) throws(VMFSError) in
            guard var record = try? LockRecord.decode(raw, index: index, kind: LockManager.kind(ofLock: index, layout: layout),
                                                      volumeID: volumeID, address: address),
                  record.holders.contains(where: { $0.slot == slot && $0.generation == generation }) else { return }
            record.removeHolders { $0.slot == slot && $0.generation == generation }
            record.version &+= 1
            try device.write(bytes: record.encoded(volumeID: volumeID, address: address), at: address)
        }
    }

    func highestJournalSequence(_ slot: Int) throws(VMFSError) -> UInt64 {
        let start = layout.journal(slot)
        let region = try device.read(count: Int(layout.journalSize), at: start)
        var highest: UInt64 = 0
        for i in 1..<(Int(layout.journalSize) / sectorSize) {
            let bytes = Array(region[(i * sectorSize)..<((i + 1) * sectorSize)])
            if case .valid(let r, _)? = try? SectorCodec.open(bytes, magic: .journalDescriptor, volumeID: volumeID,
                                                               address: start + UInt64(i * sectorSize)),
               r.u64(32) < JournalHeader.sequenceLimit {
                highest = max(highest, r.u64(32))
            }
        }
        let header = ByteReader(Array(region[0..<sectorSize])).u64(40)
        return header < JournalHeader.sequenceLimit ? max(highest, header) : highest
    }

    // MARK: Locks

    func checkLocks() throws(VMFSError) {
        progress?("lock records", 0.2)
        try forEachLockSector { (index, address, raw) throws(VMFSError) in
            let kind = LockManager.kind(ofLock: index, layout: layout)
            let record: LockRecord
            do throws(VMFSError) {
                record = try LockRecord.decode(raw, index: index, kind: kind, volumeID: volumeID, address: address)
            } catch {
                let version = SectorCodec.version(of: raw)
                try problem("lock record \(index)", offset: address, error.message) { () throws(VMFSError) in
                    var free = LockRecord(index: index, kind: kind)
                    free.version = version &+ 1
                    try device.write(bytes: free.encoded(volumeID: volumeID, address: address), at: address)
                }
                return
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
            guard !stale.isEmpty else { return }
            let who = stale.map { "host \($0.host) (slot \($0.slot), generation \($0.generation))" }.joined(separator: ", ")
            try problem("lock record \(index)", offset: address, "\(record.mode) lock held by \(who), whose heartbeat is gone") { () throws(VMFSError) in
                var fixed = record
                fixed.removeHolders { h in stale.contains(h) }
                fixed.version &+= 1
                try device.write(bytes: fixed.encoded(volumeID: volumeID, address: address), at: address)
            }
        }
    }
}
