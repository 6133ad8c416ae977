import Synchronization

/// A heartbeat slot held in the *maintenance* state by an offline tool (`fsck.vmfs -y`) while it
/// writes to the volume outside the cluster protocol.
///
/// The slot is claimed atomically and renewed every heartbeat interval like a host's. A host
/// that mounts checks for maintenance slots before and after claiming its own slot, and the
/// repair checks for live hosts after claiming this one; since both sides claim first and look
/// second, at least one of two racing parties sees the other and backs off.
///
/// The slot starts in the *checking* phase and moves to *repairing* (``markRepairing()``) before
/// the first write. A slot that stops changing in the checking phase is a repair that died
/// before it changed anything: a mounting host clears it once it has been silent for its dead
/// interval. One that stops in the repairing phase may have left the volume half-fixed: hosts
/// keep refusing until `fsck.vmfs -y` runs again and frees it.
public final class MaintenanceClaim: Sendable {
    private let heartbeat: HeartbeatService

    /// The claimed heartbeat slot.
    public let slot: Int

    private let phaseChange = Mutex<Bool>(false)

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
        let fence = FenceState(timing: timing)
        let storageFence = try Session.joinStorageFence(header: header, device: device, fence: fence)
        let updaters: AtomicUpdateFactory.Updaters
        do throws(VMFSError) {
            updaters = try AtomicUpdateFactory.make(header: header, raw: device, fenced: device, fence: fence, timing: timing,
                                                    statistics: ClusterIOStatistics(), proposer: { nil })
        } catch {
            storageFence?.leave()
            throw error
        }
        let heartbeat = HeartbeatService(device: device, updater: updaters.heartbeat, layout: header.layout,
                                         volumeID: header.volumeID, identity: identity, timing: timing,
                                         observations: HostObservations(volumeDeadIntervalMs: header.deadIntervalMs),
                                         fence: fence, storageFence: storageFence)
        let membership: HeartbeatService.Membership
        do throws(VMFSError) {
            membership = try heartbeat.claimFreeSlot(preferred: nil, state: .maintenance)
        } catch {
            storageFence?.leave()
            throw error
        }
        heartbeat.start()
        return MaintenanceClaim(heartbeat: heartbeat, slot: membership.slot)
    }

    /// Moves the slot to the repairing phase (once; later calls do nothing): from now on, a
    /// repair that stops keeps hosts out until `fsck.vmfs -y` completes.
    ///
    /// - Throws: ``VMFSError/Code/fenced`` when a host took the slot over (this repair was
    ///   stopped long enough to look abandoned): nothing may be written then.
    public func markRepairing() throws(VMFSError) {
        try phaseChange.withLock { (repairing) throws(VMFSError) in
            guard !repairing else { return }
            try heartbeat.amend { $0.maintenancePhase = .repairing }
            repairing = true
        }
    }

    /// True once ``markRepairing()`` succeeded.
    public var isRepairing: Bool { phaseChange.withLock { $0 } }

    /// Stops renewing and frees the slot.
    public func release() throws(VMFSError) {
        try heartbeat.stop(release: true)
        heartbeat.storageFence?.leave()
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
        let what = slot.maintenancePhase == .repairing
            ? "or that repair was interrupted and may have left the volume half-fixed: wait for it to finish, or run fsck.vmfs -y"
            : "which is still checking: wait for it to finish (had it died, hosts would clear its slot after its dead interval)"
        return VMFSError(.busy, refusalPrefix + "\(slot.ownerName.isEmpty ? "fsck.vmfs" : slot.ownerName) "
                         + "(host \(slot.owner), pid \(slot.ownerPID), heartbeat slot \(slot.index)\(since)), " + what)
    }

    /// The first slot of a heartbeat `region` in the maintenance state, other than `except`, and its bytes.
    static func maintenanceSlot(in region: [UInt8], layout: VolumeLayout, volumeID: UInt64,
                                except: Int? = nil) -> (slot: HeartbeatSlot, raw: [UInt8])? {
        let size = FormatConstants.sectorSize
        for index in 0..<Int(layout.maxHosts) where index != except {
            let raw = Array(region[(index * size)..<((index + 1) * size)])
            if let slot = try? HeartbeatSlot.decode(raw, index: index, volumeID: volumeID, address: layout.heartbeatSlot(index)),
               slot.state == .maintenance {
                return (slot, raw)
            }
        }
        return nil
    }

    /// Frees `slot` (seen as `raw`), a maintenance slot in the checking phase, once it has not
    /// changed for its dead interval: the check that held it died before writing anything, so
    /// the volume is as it was. Returns false, leaving it alone, when it changes meanwhile (the
    /// check is alive) or is in the repairing phase.
    static func clearIfAbandoned(_ slot: HeartbeatSlot, raw: [UInt8], heartbeat: HeartbeatService, volumeDeadIntervalMs: UInt32,
                                 interruption: Interruption) throws(VMFSError) -> Bool {
        guard slot.state == .maintenance, slot.maintenancePhase == .checking else { return false }
        let dead = UInt64(slot.deadIntervalMs > 0 ? slot.deadIntervalMs : volumeDeadIntervalMs)
        let deadline = Clock.monotonicNanoseconds + dead * 1_000_000
        while Clock.monotonicNanoseconds < deadline {
            try interruption.sleep(milliseconds: 50, while: "watching heartbeat slot \(slot.index), held by a check that may have died")
            if try heartbeat.refreshSlot(slot.index).1 != raw { return false }
        }
        try heartbeat.storageFence?.preempt(slot.fencingKey)
        var free = slot
        free.state = .free
        free.generation &+= 1
        free.version &+= 1
        free.stamp &+= 1
        free.fencingKey = 0
        return try heartbeat.write(slot: free, expected: raw) == .written
    }
}
