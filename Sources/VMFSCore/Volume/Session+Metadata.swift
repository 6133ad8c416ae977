/// Typed access to metadata sectors through the store (under the protecting lock) or straight
/// from the device (unlocked reads).
extension Session {
    // MARK: Name table (file table lock held)

    func nameSector(_ index: Int) throws(VMFSError) -> NameTableSector {
        let address = layout.nameTableSector(index)
        return try NameTableSector.decode(try store.sector(address, lockIndex: FormatConstants.tableLockIndex),
                                          index: index, volumeID: volumeID, address: address)
    }

    func storeNameSector(_ sector: NameTableSector) throws(VMFSError) {
        let address = layout.nameTableSector(sector.index)
        try store.put(address, lockIndex: FormatConstants.tableLockIndex) { version in
            var copy = sector
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    /// All name-table sectors (file table lock held).
    func nameSectors() throws(VMFSError) -> [NameTableSector] {
        var sectors: [NameTableSector] = []
        for index in 0..<FormatConstants.nameTableSectors { sectors.append(try nameSector(index)) }
        return sectors
    }

    // MARK: Descriptors

    /// The descriptor of `slot` from the store (its lock held).
    func lockedDescriptor(_ slot: Int) throws(VMFSError) -> FileDescriptorRecord {
        let address = layout.descriptor(slot)
        return try FileDescriptorRecord.decode(try store.sector(address, lockIndex: FormatConstants.descriptorLockIndex(slot: slot)),
                                               slot: slot, volumeID: volumeID, address: address)
    }

    func storeDescriptor(_ descriptor: FileDescriptorRecord) throws(VMFSError) {
        let address = layout.descriptor(descriptor.slot)
        try store.put(address, lockIndex: FormatConstants.descriptorLockIndex(slot: descriptor.slot)) { version in
            var copy = descriptor
            copy.version = version
            return copy.encoded(volumeID: volumeID, address: address)
        }
    }

    /// The descriptor of `slot` read from the device without a lock (primary, else mirror).
    func unlockedDescriptor(_ slot: Int) throws(VMFSError) -> FileDescriptorRecord {
        let address = layout.descriptor(slot)
        var lastError: VMFSError?
        for attempt in 0..<3 {
            do throws(VMFSError) {
                return try FileDescriptorRecord.decode(try store.readVerified(address), slot: slot, volumeID: volumeID, address: address)
            } catch {
                // The holder may be rewriting the sector right now: look again.
                lastError = error
                if attempt < 2 { Clock.sleep(milliseconds: 1) }
            }
        }
        throw lastError!
    }

    /// All descriptors, read without locks in one I/O (for choosing a free slot and for scans);
    /// `nil` where a sector does not decode (with `validation`).
    func allDescriptorsUnlocked(validation: FileDescriptorRecord.Validation = .forUse) throws(VMFSError) -> [FileDescriptorRecord?] {
        let size = FormatConstants.sectorSize
        let region = try rawDevice.read(count: FormatConstants.maxFiles * size, at: layout.descriptorOffset)
        return (0..<FormatConstants.maxFiles).map { slot in
            try? FileDescriptorRecord.decode(Array(region[(slot * size)..<((slot + 1) * size)]), slot: slot,
                                             volumeID: volumeID, address: layout.descriptor(slot), validation: validation)
        }
    }

    /// Slots whose descriptor reads as free (never written, or written with the in-use bit
    /// clear), from one read of the descriptor region without locks and without decoding every
    /// sector: the candidates for a new file, each checked again under its lock.
    func freeSlotCandidates() throws(VMFSError) -> [Int] {
        let size = FormatConstants.sectorSize
        let region = try rawDevice.read(count: FormatConstants.maxFiles * size, at: layout.descriptorOffset)
        return (0..<FormatConstants.maxFiles).filter { slot in
            let reader = ByteReader(Array(region[(slot * size)..<(slot * size + 64)]))
            let magic = reader.u32(0)
            return (magic == 0 || magic == SectorMagic.descriptor.rawValue) && reader.u16(34) & 1 == 0
        }
    }

    /// The current descriptor of a file: this host's copy when it has the file open, else the device's.
    func currentDescriptor(_ slot: Int) throws(VMFSError) -> FileDescriptorRecord {
        if let file = openFile(slot) { return file.descriptor }
        return try unlockedDescriptor(slot)
    }
}
