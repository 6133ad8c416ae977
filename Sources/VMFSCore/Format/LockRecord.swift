/// An on-disk lock: a 4 KiB sector updated only through the atomic sector update.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | sector header (magic `LOCK`, version +1 on every change) |
/// | 32 | 4 | lock index |
/// | 36 | 2 | object kind (0 file table, 1 file descriptor, 2 volume, 3 block cluster, 4 pointer cluster) |
/// | 38 | 1 | mode: 0 free, 1 exclusive, 2 read-only shared, 3 multi-writer |
/// | 39 | 1 | holder count |
/// | 40 | 4 | flags: bit 0 = another host asks the holder to release, bit 1 = handover in progress |
/// | 44 | 4 | handover: the lock index of the handover's primary (commit) record; 0 otherwise |
/// | 48 | 8 | wall time of the last change, ns |
/// | 64 | 48 × 32 | holders: host UUID (16), heartbeat slot (2), pad (6), heartbeat generation (8), since (8, wall ns), process ID (4), pad (4) |
public struct LockRecord: Sendable, Equatable {
    /// How a lock is held.
    public enum Mode: UInt8, Sendable, CustomStringConvertible {
        case free = 0, exclusive = 1, readOnly = 2, multiWriter = 3
        public var description: String {
            switch self {
            case .free: "free"
            case .exclusive: "exclusive"
            case .readOnly: "read-only"
            case .multiWriter: "multi-writer"
            }
        }
    }

    /// What a lock protects.
    public enum ObjectKind: UInt16, Sendable {
        case fileTable = 0, fileDescriptor = 1, volume = 2, blockCluster = 3, pointerCluster = 4
    }

    /// One host holding the lock.
    public struct Holder: Sendable, Equatable {
        public var host: HostUUID
        public var slot: Int
        public var generation: UInt64
        public var since: Int64
        public var pid: UInt32

        public init(host: HostUUID, slot: Int, generation: UInt64, since: Int64, pid: UInt32) {
            self.host = host
            self.slot = slot
            self.generation = generation
            self.since = since
            self.pid = pid
        }
    }

    /// An exclusive lock on its way from one host to another (live migration): `holders[0]` gives
    /// it, `holders[1]` takes it, and the handover's primary record decides which of them owns
    /// it (`docs/FORMAT.md` §4.1). A record with one holder left still carries it until that
    /// holder commits or aborts.
    public struct Handover: Sendable, Equatable {
        /// The lock index of the primary record, whose single update commits or aborts the handover.
        public var primaryIndex: Int

        public init(primaryIndex: Int) { self.primaryIndex = primaryIndex }
    }

    public var index: Int
    public var kind: ObjectKind
    public var mode: Mode = .free
    public var holders: [Holder] = []
    public var releaseRequested = false
    public var handover: Handover?
    public var changedWallTime: Int64 = 0
    public var version: UInt64 = 0

    public init(index: Int, kind: ObjectKind) {
        self.index = index
        self.kind = kind
    }

    /// Removes the holders `predicate` picks; a record left without holders is free. A handover
    /// keeps its flag while one of its two hosts remains: that one still has to commit or abort.
    mutating func removeHolders(where predicate: (Holder) -> Bool) {
        holders.removeAll(where: predicate)
        if holders.isEmpty {
            mode = .free
            releaseRequested = false
            handover = nil
        }
    }

    static let holdersOffset = 64
    static let holderSize = 48

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.lock, volumeID: volumeID, address: address, version: version) { w in
            w.put(UInt32(index), at: 32)
            w.put(kind.rawValue, at: 36)
            w.put(mode.rawValue, at: 38)
            w.put(UInt8(truncatingIfNeeded: min(holders.count, FormatConstants.maxLockHolders)), at: 39)
            w.put(UInt32(releaseRequested ? 1 : 0) | (handover != nil ? 2 : 0), at: 40)
            w.put(UInt32(handover?.primaryIndex ?? 0), at: 44)
            w.put(changedWallTime, at: 48)
            for (i, holder) in holders.prefix(FormatConstants.maxLockHolders).enumerated() {
                let base = Self.holdersOffset + i * Self.holderSize
                w.put(uuid: holder.host, at: base)
                w.put(UInt16(truncatingIfNeeded: holder.slot), at: base + 16)
                w.put(holder.generation, at: base + 24)
                w.put(holder.since, at: base + 32)
                w.put(holder.pid, at: base + 40)
            }
        }
    }

    static func decode(_ bytes: [UInt8], index: Int, kind: ObjectKind, volumeID: UInt64,
                       address: UInt64) throws(VMFSError) -> LockRecord {
        var record = LockRecord(index: index, kind: kind)
        let name = "lock record \(index)"
        switch try SectorCodec.open(bytes, magic: .lock, volumeID: volumeID, address: address, structure: name) {
        case .pristine:
            return record
        case .valid(let r, let version):
            let inHandover = r.u32(40) & 2 != 0
            let primary = Int(r.u32(44))
            guard Int(r.u32(32)) == index, r.u16(36) == kind.rawValue, let mode = Mode(rawValue: r.u8(38)),
                  Int(r.u8(39)) <= FormatConstants.maxLockHolders,
                  (mode == .free) == (r.u8(39) == 0),
                  mode == .readOnly || mode == .multiWriter || r.u8(39) <= (inHandover ? 2 : 1),
                  !inHandover || (mode == .exclusive && kind == .fileDescriptor && (1...FormatConstants.maxFiles).contains(primary)) else {
                throw VMFSError(.corrupt, "\(name) has inconsistent fields", location: .init(structure: name, offset: address + 32))
            }
            record.version = version
            record.mode = mode
            record.releaseRequested = r.u32(40) & 1 != 0
            record.handover = inHandover ? Handover(primaryIndex: primary) : nil
            record.changedWallTime = r.i64(48)
            for i in 0..<Int(r.u8(39)) {
                let base = holdersOffset + i * holderSize
                record.holders.append(Holder(host: r.uuid(at: base), slot: Int(r.u16(base + 16)),
                                             generation: r.u64(base + 24), since: r.i64(base + 32), pid: r.u32(base + 40)))
            }
            return record
        }
    }
}
