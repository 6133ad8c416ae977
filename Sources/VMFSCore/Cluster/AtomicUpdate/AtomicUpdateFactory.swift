/// Builds the atomic sector updates a volume's header asks for, on the device it was opened on.
enum AtomicUpdateFactory {
    /// The updaters for heartbeat slots and for lock records.
    struct Updaters {
        var heartbeat: any AtomicSectorUpdate
        var locks: any AtomicSectorUpdate
    }

    /// - Parameters:
    ///   - raw: The device as opened (heartbeat slots are written through it).
    ///   - fenced: The device whose writes stop when this host is fenced (lock records).
    ///   - proposer: This host's slot and UUID for Disk Paxos ballots.
    /// - Throws: ``VMFSError/Code/unsupported`` when the device cannot provide the volume's method.
    static func make(header: VolumeHeader, raw: any BlockDevice, fenced: any BlockDevice, fence: FenceState?,
                     timing: HeartbeatTiming, statistics: ClusterIOStatistics,
                     proposer: @escaping @Sendable () -> (slot: Int, host: HostUUID)?) throws(VMFSError) -> Updaters {
        let method = header.atomicUpdate
        let storage = raw as? any SCSIStorage
        storage?.setCommandTimeout(milliseconds: timing.ioTimeoutMs)
        // Reservation breaking and lease expiry compare one host's hold against another's
        // patience: every host must use the same T, the volume's, whatever its own override.
        let volumeTimeoutMs = header.ioTimeoutMs
        switch method {
        case .rangeLocks:
            if let storage {
                throw VMFSError(.unsupported, "the volume on \(storage.targetDescription) coordinates hosts with OFD byte-range locks, which "
                                + "only exclude processes of one machine; a LUN needs a volume made with --atomic-update ats, scsi2 or paxos",
                                location: .init(device: raw.path, structure: "volume header", offset: 376))
            }
            return Updaters(heartbeat: RangeLockSectorUpdate(device: raw, statistics: statistics),
                            locks: RangeLockSectorUpdate(device: fenced, statistics: statistics))
        case .compareAndWrite, .scsiReservation:
            guard let storage else {
                throw VMFSError(.unsupported, "the volume uses \(method) to coordinate hosts, which needs the LUN itself: "
                                + "open it as iscsi://host/target-iqn/lun, not through \(raw.path)",
                                location: .init(device: raw.path, structure: "volume header", offset: 376))
            }
            if method == .compareAndWrite {
                return Updaters(heartbeat: CompareAndWriteSectorUpdate(storage: storage, fence: nil, statistics: statistics),
                                locks: CompareAndWriteSectorUpdate(storage: storage, fence: fence, statistics: statistics))
            }
            return Updaters(heartbeat: ReservationSectorUpdate(storage: storage, fence: nil, statistics: statistics, ioTimeoutMs: volumeTimeoutMs),
                            locks: ReservationSectorUpdate(storage: storage, fence: fence, statistics: statistics, ioTimeoutMs: volumeTimeoutMs))
        case .diskPaxos:
            return Updaters(heartbeat: DeltaLeaseSectorUpdate(device: raw, statistics: statistics, ioTimeoutMs: volumeTimeoutMs),
                            locks: DiskPaxosSectorUpdate(device: fenced, layout: header.layout, volumeID: header.volumeID,
                                                         statistics: statistics, ioTimeoutMs: volumeTimeoutMs, proposer: proposer))
        }
    }
}
