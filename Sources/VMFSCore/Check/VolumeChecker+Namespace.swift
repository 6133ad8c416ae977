#if canImport(Glibc)
internal import Glibc
#endif

/// fsck: mirrored sectors, the name table and the file descriptors.
extension VolumeChecker {
    // MARK: Mirrored sectors

    /// Reads a mirrored sector, reconciles its two copies, and returns the decoded value.
    func mirrored<T>(_ address: UInt64, structure: String,
                             decode: ([UInt8]) throws(VMFSError) -> T) throws(VMFSError) -> T? {
        guard let mirror = layout.mirror(of: address) else {
            throw VMFSError(.invalidArgument, "\(structure) at byte \(address) has no mirror copy")
        }
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

    /// When repairing, rewrites a sector whose two copies are both damaged with its empty state,
    /// and marks the problem just recorded as repaired, saying what was lost.
    func resetLostSector(_ address: UInt64, consequence: String, _ make: (UInt64) -> [UInt8]) throws(VMFSError) {
        guard options.repair else { return }
        try writeRepaired(address, make)
        report.problems[report.problems.count - 1].repaired = true
        report.problems[report.problems.count - 1].message += "; \(consequence)"
    }

    // MARK: Names and descriptors

    func checkNames() throws(VMFSError) {
        progress?("name table and file descriptors", 0.3)
        nameSectors = []
        for index in 0..<FormatConstants.nameTableSectors {
            let address = layout.nameTableSector(index)
            let sector = try mirrored(address, structure: "name table sector \(index)") { (bytes) throws(VMFSError) in
                try NameTableSector.decode(bytes, index: index, volumeID: volumeID, address: address)
            }
            if sector == nil {
                try resetLostSector(address, consequence: "its names are lost (their files are reconnected as lost+found.N)") { version in
                    var empty = NameTableSector(index: index)
                    empty.version = version
                    return empty.encoded(volumeID: volumeID, address: address)
                }
            }
            nameSectors.append(sector ?? NameTableSector(index: index))
        }
        for slot in 0..<FormatConstants.maxFiles {
            try checkInterruption()
            let address = layout.descriptor(slot)
            let descriptor = try mirrored(address, structure: "file descriptor \(slot)") { (bytes) throws(VMFSError) in
                try FileDescriptorRecord.decode(bytes, slot: slot, volumeID: volumeID, address: address, validation: .forRepair)
            }
            if descriptor == nil {
                try resetLostSector(address, consequence: "the file in this slot is lost") { version in
                    var free = FileDescriptorRecord(slot: slot)
                    free.version = version
                    return free.encoded(volumeID: volumeID, address: address)
                }
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

    func freeDescriptor(_ slot: Int, generation: UInt32) -> FileDescriptorRecord {
        var free = FileDescriptorRecord(slot: slot)
        free.generation = generation
        return free
    }

    func freeNamePosition() -> (Int, Int)? {
        for (s, sector) in nameSectors.enumerated() {
            for (e, entry) in sector.entries.enumerated() where entry == nil && s * FormatConstants.nameEntriesPerSector + e < FormatConstants.maxFiles {
                return (s, e)
            }
        }
        return nil
    }

    func rewriteDescriptor(_ slot: Int) throws(VMFSError) {
        guard let descriptor = descriptors[slot] else { return }
        let address = layout.descriptor(slot)
        try writeRepaired(address) { version in
            var copy = descriptor
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    func lockHolderAlive(_ slot: Int) -> Bool {
        let index = FormatConstants.descriptorLockIndex(slot: slot)
        guard let raw = try? device.read(count: sectorSize, at: layout.lockRecord(index)),
              let record = try? LockRecord.decode(raw, index: index, kind: .fileDescriptor, volumeID: volumeID,
                                                  address: layout.lockRecord(index)) else { return false }
        return record.holders.contains { aliveSlots.contains($0.slot) && slots[$0.slot]?.generation == $0.generation }
    }
}
