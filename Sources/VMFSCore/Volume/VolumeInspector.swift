/// How a volume coordinates its hosts (``VolumeInspector/coordination()``).
public struct CoordinationInfo: Sendable, Codable, Equatable {
    /// `ofd`, `ats`, `scsi2` or `paxos`.
    public var atomicUpdate: String
    public var atomicUpdateDescription: String
    /// `none` or `pr`.
    public var fencing: String
    public var fencingDescription: String
    /// The iSCSI LUN (without credentials), when the volume was opened through one.
    public var target: String?
    /// Persistent-reservation keys registered at the LUN now.
    public var registeredKeys: [String]?
    /// The persistent reservation the LUN holds now.
    public var reservation: String?
}

/// Read-only views of a volume that need no heartbeat slot: `vmfs info`, `ls`, `hosts`, `locks`.
///
/// Nothing is written. What other hosts are changing right now may be seen half-way.
public final class VolumeInspector: Sendable {
    public let device: any BlockDevice
    public let header: VolumeHeader
    var layout: VolumeLayout { header.layout }

    /// Opens `path` read-only.
    public convenience init(path: String) throws(VMFSError) {
        try self.init(device: try DeviceOpener.open(path, readOnly: true))
    }

    public init(device: any BlockDevice) throws(VMFSError) {
        self.device = device
        header = try Volume.readHeader(device)
    }

    /// Every file with its attributes, as last written to the device.
    public func files() throws(VMFSError) -> [FileStatus] {
        let entries = try NamespaceCache.readTable(device: device, layout: layout, volumeID: header.volumeID)
        let size = FormatConstants.sectorSize
        let region = try device.read(count: FormatConstants.maxFiles * size, at: layout.descriptorOffset)
        var result: [FileStatus] = []
        for entry in entries {
            let address = layout.descriptor(entry.slot)
            let bytes = Array(region[(entry.slot * size)..<((entry.slot + 1) * size)])
            let descriptor = (try? FileDescriptorRecord.decode(bytes, slot: entry.slot, volumeID: header.volumeID, address: address))
                ?? (try? FileDescriptorRecord.decode(try device.read(count: size, at: layout.descriptorMirror(entry.slot)), slot: entry.slot,
                                                     volumeID: header.volumeID, address: address))
            guard let descriptor, descriptor.inUse, descriptor.generation == entry.generation else { continue }
            result.append(FileStatus(name: entry.name, descriptor: descriptor, blockSize: layout.blockSize))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// Free and total space from the bitmaps.
    public func statistics() throws(VMFSError) -> VolumeStatistics {
        try SpaceAccounting.statistics(device: device, layout: layout, files: try files().count)
    }

    /// Heartbeat slots in use, watched for `observeMilliseconds` to tell live hosts from silent ones
    /// (stopping early with ``VMFSError/Code/interrupted`` when `interruption` is requested).
    public func hosts(observeMilliseconds: UInt64, interruption: Interruption = .process) throws(VMFSError) -> [HostInfo] {
        let observations = HostObservations(volumeDeadIntervalMs: header.deadIntervalMs)
        let count = Int(layout.maxHosts) * FormatConstants.sectorSize
        let start = Clock.monotonicNanoseconds
        observations.update(region: try device.read(count: count, at: layout.heartbeatOffset), layout: layout, volumeID: header.volumeID)
        var elapsed: UInt64 = 0
        while elapsed < observeMilliseconds {
            try interruption.sleep(milliseconds: min(50, observeMilliseconds - elapsed), while: "watching the heartbeat region")
            observations.update(region: try device.read(count: count, at: layout.heartbeatOffset), layout: layout, volumeID: header.volumeID)
            elapsed = (Clock.monotonicNanoseconds - start) / 1_000_000
        }
        var infos = HostInfo.describe(observations, own: nil)
        for i in infos.indices where infos[i].liveness == "alive" && infos[i].state != "free" {
            // Unchanged for the whole window: silent (not yet proven dead unless the window covers D).
            if let age = infos[i].msSinceChange, age + 5 >= elapsed, elapsed > 0 {
                infos[i].liveness = elapsed >= UInt64(infos[i].deadIntervalMs) ? "dead" : "silent"
            }
        }
        if header.fencing == .persistentReservation, let keys = try? (device as? any SCSIStorage)?.registeredKeys() {
            let registered = Set(keys.map { "0x" + String($0, radix: 16) })
            for i in infos.indices where infos[i].fencingKey != nil {
                infos[i].registered = registered.contains(infos[i].fencingKey ?? "")
            }
        }
        return infos
    }

    /// How the volume coordinates its hosts, and what the LUN holds now (`vmfs info`).
    public func coordination() -> CoordinationInfo {
        let storage = device as? any SCSIStorage
        var info = CoordinationInfo(atomicUpdate: header.atomicUpdate.name, atomicUpdateDescription: header.atomicUpdate.description,
                                    fencing: header.fencing.name, fencingDescription: header.fencing.description,
                                    target: storage?.targetDescription)
        if let storage, header.fencing == .persistentReservation {
            info.registeredKeys = (try? storage.registeredKeys())?.map { "0x" + String($0, radix: 16) }
            if let held = try? storage.persistentReservation() {
                let type = held.type == 5 ? "WRITE EXCLUSIVE – REGISTRANTS ONLY" : "type \(held.type)"
                info.reservation = "\(type), key 0x\(String(held.key, radix: 16))"
            }
        }
        return info
    }

    /// Every lock that is held, with what it protects and who holds it.
    public func locks() throws(VMFSError) -> [LockInfo] {
        let count = Int(layout.lockCount)
        let size = FormatConstants.sectorSize
        let region = try device.read(count: count * size, at: layout.lockOffset)
        let slots = try device.read(count: Int(layout.maxHosts) * size, at: layout.heartbeatOffset)
        let names = (try? NamespaceCache.readTable(device: device, layout: layout, volumeID: header.volumeID)) ?? []
        var result: [LockInfo] = []
        for index in 0..<count {
            let raw = Array(region[(index * size)..<((index + 1) * size)])
            if ByteReader(raw).isAllZero { continue }
            let kind = LockManager.kind(ofLock: index, layout: layout)
            guard let record = try? LockRecord.decode(raw, index: index, kind: kind, volumeID: header.volumeID,
                                                      address: layout.lockRecord(index)), record.mode != .free else { continue }
            let holders = record.holders.map { holder -> LockInfo.Holder in
                let slotBytes = holder.slot < Int(layout.maxHosts) ? Array(slots[(holder.slot * size)..<((holder.slot + 1) * size)]) : []
                let slot = try? HeartbeatSlot.decode(slotBytes, index: holder.slot, volumeID: header.volumeID,
                                                     address: layout.heartbeatSlot(holder.slot))
                let status: String
                if let slot {
                    status = slot.generation == holder.generation && slot.state == .live ? "held" : "stale"
                } else {
                    status = "unknown"
                }
                return LockInfo.Holder(host: holder.host.description, hostName: slot?.ownerName ?? "", slot: holder.slot,
                                       generation: holder.generation, since: formatWallTime(holder.since), pid: holder.pid, status: status)
            }
            result.append(LockInfo(index: index, object: objectName(index, kind: kind, names: names), mode: record.mode.description,
                                   version: record.version, holders: holders, releaseRequested: record.releaseRequested))
        }
        return result
    }

    func objectName(_ index: Int, kind: LockRecord.ObjectKind, names: [NameEntry]) -> String {
        switch kind {
        case .fileTable: return "file table"
        case .volume: return "volume"
        case .fileDescriptor:
            let slot = index - 1
            if let name = names.first(where: { $0.slot == slot })?.name { return "file '\(name)'" }
            return "file slot \(slot)"
        case .blockCluster: return "block cluster \(index - FormatConstants.firstClusterLock)"
        case .pointerCluster: return "pointer-block cluster \(index - FormatConstants.firstClusterLock - Int(layout.blockClusterCount))"
        }
    }

    /// Up to `limit` bytes of file `name`, read without taking its lock (what was last written
    /// to the device; a file being written elsewhere may be seen half-way).
    public func contents(of name: String, limit: Int = 1 << 20) throws(VMFSError) -> [UInt8] {
        let names = try NamespaceCache.readTable(device: device, layout: layout, volumeID: header.volumeID)
        guard let entry = names.first(where: { $0.name == name }) else { throw VMFSError(.notFound, "no file named '\(name)'") }
        let address = layout.descriptor(entry.slot)
        let size = FormatConstants.sectorSize
        let primary = try device.read(count: size, at: address)
        let descriptor: FileDescriptorRecord
        if let decoded = try? FileDescriptorRecord.decode(primary, slot: entry.slot, volumeID: header.volumeID, address: address) {
            descriptor = decoded
        } else {
            descriptor = try FileDescriptorRecord.decode(try device.read(count: size, at: layout.descriptorMirror(entry.slot)), slot: entry.slot,
                                                         volumeID: header.volumeID, address: address)
        }
        let count = Int(min(UInt64(max(limit, 0)), descriptor.size))
        if descriptor.isInline { return Array(descriptor.inlineData.prefix(count)) }
        let map = unlockedMap(of: descriptor, name: name)
        var result: [UInt8] = []
        let blockSize = UInt64(layout.blockSize)
        var position: UInt64 = 0
        while result.count < count {
            let block = position / blockSize
            let length = Int(min(blockSize, UInt64(count - result.count)))
            let entry = try map.entry(at: block)
            if entry == 0 || entry & FormatConstants.unwrittenFlag != 0 {
                result += [UInt8](repeating: 0, count: length)
            } else {
                result += try device.read(count: length, at: layout.block(UInt64(entry)))
            }
            position += blockSize
        }
        return result
    }

    /// The block map of `descriptor` read straight from the device (a pointer block's mirror
    /// when the primary fails validation), every entry checked by ``BlockMapReader``.
    private func unlockedMap(of descriptor: FileDescriptorRecord, name: String) -> BlockMapReader {
        let device = device
        let layout = layout
        let volumeID = header.volumeID
        return BlockMapReader(layout: layout, descriptor: descriptor, fileName: name) { (number) throws(VMFSError) in
            let address = layout.pointerNode(number)
            let size = FormatConstants.sectorSize
            do throws(VMFSError) {
                return try PointerNode.decode(try device.read(count: size, at: address), number: number, volumeID: volumeID, address: address)
            } catch {
                guard let mirror = layout.mirror(of: address),
                      let node = try? PointerNode.decode(try device.read(count: size, at: mirror), number: number,
                                                         volumeID: volumeID, address: address) else { throw error }
                return node
            }
        }
    }

    /// The lock index of the file `name`.
    public func lockIndex(ofFile name: String) throws(VMFSError) -> Int {
        let names = try NamespaceCache.readTable(device: device, layout: layout, volumeID: header.volumeID)
        guard let entry = names.first(where: { $0.name == name }) else { throw VMFSError(.notFound, "no file named '\(name)'") }
        return FormatConstants.descriptorLockIndex(slot: entry.slot)
    }
}
