/// How a volume makes its one-sector compare-and-writes atomic between hosts (volume header
/// byte 376; docs/FORMAT.md §10). Chosen by `mkfs.vmfs` and fixed for the volume's life.
public enum AtomicUpdateMethod: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// OFD byte-range locks: processes sharing one kernel (image files, loop devices). The only
    /// method of format 1.0 and 1.1 volumes.
    case rangeLocks = 0
    /// SCSI COMPARE AND WRITE of the sector (ATS, VMFS5's way) on a LUN that supports it.
    case compareAndWrite = 1
    /// SCSI-2 RESERVE/RELEASE of the LUN around read, compare and write (VMFS3's way).
    case scsiReservation = 2
    /// Disk Paxos leases on a disk that only offers reads and writes (sanlock's way).
    case diskPaxos = 3

    /// The name `mkfs.vmfs --atomic-update` takes and `vmfs info` shows.
    public var name: String {
        switch self {
        case .rangeLocks: "ofd"
        case .compareAndWrite: "ats"
        case .scsiReservation: "scsi2"
        case .diskPaxos: "paxos"
        }
    }

    public var description: String {
        switch self {
        case .rangeLocks: "OFD byte-range locks (one machine)"
        case .compareAndWrite: "ATS (SCSI COMPARE AND WRITE)"
        case .scsiReservation: "SCSI-2 RESERVE/RELEASE"
        case .diskPaxos: "Disk Paxos"
        }
    }

    /// Parses a name as ``name`` gives it.
    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = found
    }

    /// True when the method needs a SCSI LUN (`iscsi://`).
    public var needsSCSI: Bool { self == .compareAndWrite || self == .scsiReservation }
}

/// How hosts declared dead are kept from writing at the storage (volume header byte 377).
public enum FencingMethod: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Only the hosts' own discipline (a host stops writing D − T after its last renewal).
    case none = 0
    /// SPC-3 persistent reservations: every host registers a key (WRITE EXCLUSIVE – ALL
    /// REGISTRANTS); recovering a dead host preempts its key at the target.
    case persistentReservation = 1

    public var name: String { self == .none ? "none" : "pr" }

    public var description: String {
        self == .none ? "none (self-fencing only)" : "SPC-3 persistent reservations"
    }

    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = found
    }
}
