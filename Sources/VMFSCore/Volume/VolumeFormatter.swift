/// Parameters of a new volume.
public struct FormatOptions: Sendable {
    public var label: String = ""
    public var blockSize: UInt32 = 1 << 20
    public var maxHosts: UInt32 = UInt32(FormatConstants.minimumHosts)
    /// Journal size per host; `nil` picks 1/1024 of the device, 1–16 MiB.
    public var journalSize: UInt64?
    public var timing: HeartbeatTiming = .vmwareDefaults
    /// The volume UUID; `nil` makes a random one.
    public var uuid: HostUUID?
    /// Overwrite an existing filesystem signature.
    public var force = false
    /// How hosts update lock and heartbeat sectors atomically; nil chooses (``VolumeFormatter/chooseCoordination(for:options:)``).
    public var atomicUpdate: AtomicUpdateMethod?
    /// How dead hosts are fenced at the storage; nil chooses.
    public var fencing: FencingMethod?

    public init() {}
}

/// The coordination methods a new volume gets, and what the probes found.
public struct CoordinationChoice: Sendable {
    public var atomicUpdate: AtomicUpdateMethod
    public var fencing: FencingMethod
    /// One line per probe or decision, for `mkfs.vmfs` to print.
    public var notes: [String]
}

/// Creates a volume (`mkfs.vmfs`): writes the header and its backup and clears the metadata
/// regions, without touching the data area, so even a 64 TiB sparse image formats in well under
/// a second.
public enum VolumeFormatter {
    /// Formats `device` and returns the new header.
    ///
    /// - Throws: ``VMFSError/Code/busy`` when the device already carries a filesystem signature
    ///   and `options.force` is false; ``VMFSError/Code/invalidArgument`` for parameters that do
    ///   not fit the device.
    @discardableResult
    public static func format(_ device: any BlockDevice, options: FormatOptions) throws(VMFSError) -> VolumeHeader {
        guard !device.isReadOnly else {
            throw VMFSError(.readOnly, "\(device.path) is read-only", location: .init(device: device.path))
        }
        if Array(options.label.utf8).count > 127 {
            throw VMFSError(.invalidArgument, "the label is \(options.label.utf8.count) bytes; labels are at most 127 bytes")
        }
        try options.timing.validate()
        if !options.force, let found = try FilesystemSignature.detect(device) {
            throw VMFSError(.busy, "\(device.path) already contains \(found); use --force to overwrite it",
                            location: .init(device: device.path))
        }
        let choice = try chooseCoordination(for: device, options: options)
        try checkTiming(options.timing, for: choice.atomicUpdate, device: device)
        let journalSize = options.journalSize ?? VolumeLayout.defaultJournalSize(deviceSize: device.size)
        let layout = try VolumeLayout.compute(deviceSize: device.size, blockSize: options.blockSize,
                                              maxHosts: options.maxHosts, journalSize: journalSize,
                                              diskPaxos: choice.atomicUpdate == .diskPaxos)
        var header = VolumeHeader(uuid: options.uuid ?? HostUUID.random(), label: options.label,
                                  creationTime: Clock.wallNanoseconds, layout: layout,
                                  heartbeatIntervalMs: options.timing.renewIntervalMs,
                                  deadIntervalMs: options.timing.deadIntervalMs, ioTimeoutMs: options.timing.ioTimeoutMs)
        header.atomicUpdate = choice.atomicUpdate
        header.fencing = choice.fencing
        // Registrations left by the hosts of an earlier volume on this LUN would refuse our writes.
        try (device as? any SCSIStorage)?.clearPersistentReservations()
        // Invalidate the old header first, so a crash part-way leaves no volume rather than a mixed one.
        try device.write(bytes: [UInt8](repeating: 0, count: FormatConstants.sectorSize), at: 0)
        try device.flush()
        // Every metadata region reads as zeros ("pristine") afterwards: free slots, free locks,
        // empty journals, free clusters, an empty name table.
        try device.zero(offset: UInt64(FormatConstants.sectorSize), length: layout.dataOffset - UInt64(FormatConstants.sectorSize))
        try device.write(bytes: header.encoded(), at: layout.backupHeaderOffset)
        try device.flush()
        try device.write(bytes: header.encoded(), at: 0)
        try device.flush()
        return header
    }

    /// Disk Paxos claims a heartbeat slot by writing it and reading it back 2T later, and the
    /// claimer must renew within D − T of its write: D must leave room for 3T and two renewals.
    static func checkTiming(_ timing: HeartbeatTiming, for method: AtomicUpdateMethod, device: any BlockDevice) throws(VMFSError) {
        guard method == .diskPaxos else { return }
        let needed = 3 * UInt64(timing.ioTimeoutMs) + 2 * UInt64(timing.renewIntervalMs)
        guard UInt64(timing.deadIntervalMs) >= needed else {
            throw VMFSError(.invalidArgument, "with --atomic-update paxos the dead interval must be at least 3 × I/O timeout + 2 × heartbeat "
                            + "interval (\(needed) ms; a slot claim waits 2T before it is known to hold), not \(timing.deadIntervalMs) ms",
                            location: .init(device: device.path))
        }
    }

    /// Resolves the atomic update and fencing methods for `device`: explicit choices are checked
    /// against what the device can do (probing the LUN), open ones pick the best it offers — ATS
    /// when the LUN executes COMPARE AND WRITE, else SCSI-2 reservations; persistent-reservation
    /// fencing when the LUN supports it (never with SCSI-2 reservations: SPC-3 lets them not
    /// coexist); OFD locks for files and block devices of this machine.
    ///
    /// - Throws: ``VMFSError/Code/unsupported`` naming the method and what the probe answered.
    public static func chooseCoordination(for device: any BlockDevice, options: FormatOptions) throws(VMFSError) -> CoordinationChoice {
        var notes: [String] = []
        guard let storage = device as? any SCSIStorage else {
            let method = options.atomicUpdate ?? .rangeLocks
            if method.needsSCSI {
                throw VMFSError(.unsupported, "--atomic-update \(method.name) needs a SCSI LUN (iscsi://host/target-iqn/lun); \(device.path) is not one",
                                location: .init(device: device.path))
            }
            if options.fencing == .persistentReservation {
                throw VMFSError(.unsupported, "--fencing pr needs a SCSI LUN (iscsi://host/target-iqn/lun); \(device.path) is not one",
                                location: .init(device: device.path))
            }
            return CoordinationChoice(atomicUpdate: method, fencing: .none, notes: notes)
        }
        if options.atomicUpdate == .rangeLocks {
            throw VMFSError(.unsupported, "--atomic-update ofd cannot coordinate machines sharing \(storage.targetDescription): "
                            + "byte-range locks only exclude processes of one machine", location: .init(device: device.path))
        }
        var method = options.atomicUpdate
        if method == nil || method == .compareAndWrite {
            switch try storage.probeCompareAndWrite(at: 0) {
            case .supported:
                notes.append("COMPARE AND WRITE: supported by the LUN (probed)")
                method = .compareAndWrite
            case .unsupported(let why):
                notes.append("COMPARE AND WRITE: not supported by the LUN (\(why))")
                if method == .compareAndWrite {
                    throw VMFSError(.unsupported, "\(storage.targetDescription) does not execute COMPARE AND WRITE (\(why)); "
                                    + "use --atomic-update scsi2 or paxos", location: .init(device: device.path))
                }
                method = .scsiReservation
            }
        }
        let chosen = method ?? .scsiReservation
        var fencing = options.fencing
        if chosen == .scsiReservation {
            if fencing == .persistentReservation {
                throw VMFSError(.unsupported, "--fencing pr cannot be combined with SCSI-2 reservations (a LUN with persistent "
                                + "reservations refuses RESERVE(6)); use --atomic-update ats or paxos", location: .init(device: device.path))
            }
            fencing = FencingMethod.none
        } else if fencing == nil || fencing == .persistentReservation {
            switch try storage.probePersistentReservations() {
            case .supported:
                notes.append("persistent reservations: supported by the LUN (probed)")
                fencing = fencing ?? .persistentReservation
            case .unsupported(let why):
                notes.append("persistent reservations: not supported by the LUN (\(why))")
                if fencing == .persistentReservation {
                    throw VMFSError(.unsupported, "\(storage.targetDescription) does not support persistent reservations (\(why))",
                                    location: .init(device: device.path))
                }
                fencing = FencingMethod.none
            }
        }
        return CoordinationChoice(atomicUpdate: chosen, fencing: fencing ?? .none, notes: notes)
    }
}
