/// A heartbeat slot held in the *maintenance* state by an offline tool (`fsck.vmfs -y`) while it
/// writes to the volume outside the cluster protocol.
///
/// The slot is claimed atomically and renewed every heartbeat interval like a host's. A host
/// that mounts checks for maintenance slots before and after claiming its own slot, and the
/// repair checks for live hosts after claiming this one; since both sides claim first and look
/// second, at least one of two racing parties sees the other and backs off. A maintenance slot
/// that stops changing marks an interrupted repair: hosts keep refusing to mount until
/// `fsck.vmfs -y` runs again and frees it.
public final class MaintenanceClaim: Sendable {
    private let heartbeat: HeartbeatService

    /// The claimed heartbeat slot.
    public let slot: Int

    private init(heartbeat: HeartbeatService, slot: Int) {
        self.heartbeat = heartbeat
        self.slot = slot
    }

    /// Claims a free heartbeat slot of the volume on `device` in the maintenance state and keeps
    /// renewing it until ``release()``.
    ///
    /// - Throws: ``VMFSError`` when no slot is free or the device fails.
    public static func acquire(device: any BlockDevice, header: VolumeHeader, identity: HostIdentity) throws(VMFSError) -> MaintenanceClaim {
        let timing = HeartbeatTiming(renewIntervalMs: header.heartbeatIntervalMs, deadIntervalMs: header.deadIntervalMs,
                                     ioTimeoutMs: header.ioTimeoutMs)
        let heartbeat = HeartbeatService(device: device, updater: RangeLockSectorUpdate(device: device), layout: header.layout,
                                         volumeID: header.volumeID, identity: identity, timing: timing,
                                         observations: HostObservations(volumeDeadIntervalMs: header.deadIntervalMs),
                                         fence: FenceState(timing: timing))
        let membership = try heartbeat.claimFreeSlot(preferred: nil, state: .maintenance)
        heartbeat.start()
        return MaintenanceClaim(heartbeat: heartbeat, slot: membership.slot)
    }

    /// Stops renewing and frees the slot.
    public func release() throws(VMFSError) {
        try heartbeat.stop(release: true)
    }

    /// Stops renewing without freeing the slot, as a crashed repair would (tests).
    func abandon() {
        try? heartbeat.stop(release: false)
    }

    private static let refusalPrefix = "the volume is being repaired by "

    /// True when `error` is a mount refused because of a repair.
    static func isRefusal(_ error: VMFSError) -> Bool { error.code == .busy && error.message.hasPrefix(refusalPrefix) }

    /// A refusal naming the repair in `slot`, for a host that wants to mount.
    static func refusal(_ slot: HeartbeatSlot) -> VMFSError {
        let since = slot.claimedWallTime == 0 ? "" : " since \(formatWallTime(slot.claimedWallTime))"
        return VMFSError(.busy, refusalPrefix + "\(slot.ownerName.isEmpty ? "fsck.vmfs" : slot.ownerName) "
                         + "(host \(slot.owner), pid \(slot.ownerPID), heartbeat slot \(slot.index)\(since)), "
                         + "or that repair was interrupted: wait for it to finish, or run fsck.vmfs -y")
    }

    /// The first slot of a heartbeat `region` in the maintenance state, other than `except`.
    static func maintenanceSlot(in region: [UInt8], layout: VolumeLayout, volumeID: UInt64, except: Int? = nil) -> HeartbeatSlot? {
        let size = FormatConstants.sectorSize
        for index in 0..<Int(layout.maxHosts) where index != except {
            let raw = Array(region[(index * size)..<((index + 1) * size)])
            if let slot = try? HeartbeatSlot.decode(raw, index: index, volumeID: volumeID, address: layout.heartbeatSlot(index)),
               slot.state == .maintenance {
                return slot
            }
        }
        return nil
    }
}
