#if canImport(Glibc)
internal import Glibc
#endif

/// Options of a check.
public struct CheckOptions: Sendable {
    /// Repair what is wrong (`-y`); otherwise nothing is written (`-n`).
    public var repair = false
    /// Treat every host that still holds a heartbeat slot as dead without watching it.
    public var force = false
    /// How long to watch live-looking heartbeat slots; `nil` picks the hosts' own intervals.
    public var observeMilliseconds: UInt64?
    /// A heartbeat slot to leave alone: the maintenance slot of the repair being verified.
    var ignoredSlot: Int?
    /// Stops the check at its next step when requested (SIGINT, SIGTERM in `fsck.vmfs`).
    public var interruption: Interruption = .process

    public init() {}
}

/// `fsck.vmfs`: checks every structure of a volume and, with ``CheckOptions/repair``, fixes it.
///
/// Order: volume header (and its backup), heartbeat slots and journals (a crashed host's journal
/// is replayed — into memory only without `repair`, so the rest is checked as it will be after
/// recovery), lock records, name table and file descriptors (with their mirrors), block maps,
/// and finally the allocation bitmaps against what the maps reference.
public final class VolumeChecker {
    let device: any BlockDevice
    let options: CheckOptions
    let progress: ((String, Double) -> Void)?
    var report: CheckReport
    var view: any BlockDevice
    var header: VolumeHeader!
    var layout: VolumeLayout { header.layout }
    var volumeID: UInt64 { header.volumeID }
    var slots: [HeartbeatSlot?] = []
    var aliveSlots: Set<Int> = []
    var recoveredSlots: Set<Int> = []
    /// The repair's own heartbeat slot (maintenance state), which keeps hosts from mounting.
    var maintenance: MaintenanceClaim?
    var ownSlot: Int? { maintenance?.slot ?? options.ignoredSlot }
    var descriptors: [FileDescriptorRecord?] = Array(repeating: nil, count: FormatConstants.maxFiles)
    var nameSectors: [NameTableSector] = []
    let sectorSize = FormatConstants.sectorSize

    /// Creates a checker for `device` (open it read-only unless repairing).
    public init(device: any BlockDevice, options: CheckOptions, progress: ((String, Double) -> Void)? = nil) {
        self.device = device
        self.options = options
        self.progress = progress
        report = CheckReport(device: device.path)
        view = options.repair ? device : OverlayDevice(base: device)
    }

    /// Runs the check; never throws — operational failures end up in the report (exit code 8).
    public func run() -> CheckReport {
        do throws(VMFSError) {
            guard try checkHeader() else { return report }
            if options.repair { try claimMaintenance() }
            try checkHeartbeats()
            try checkLocks()
            try checkNames()
            try checkMaps()
            if options.repair { try device.flush() }
        } catch where error.code == .interrupted {
            return interrupted(error)
        } catch {
            report.operationalError = error.description
        }
        progress?("done", 1)
        if options.repair && report.problems.contains(where: { $0.repaired }) && report.operationalError == nil {
            // Verify the repair with a read-only pass; anything left is reported as unrepaired.
            var verify = CheckOptions()
            verify.force = true
            verify.ignoredSlot = maintenance?.slot
            verify.interruption = options.interruption
            let second = VolumeChecker(device: device, options: verify).run()
            for problem in second.problems {
                report.problems.append(CheckReport.Problem(structure: problem.structure, offset: problem.offset,
                                                           message: "still wrong after repair: \(problem.message)", repaired: false))
            }
        }
        if let maintenance {
            do throws(VMFSError) {
                try maintenance.release()
            } catch {
                report.operationalError = report.operationalError ?? "freeing the repair's heartbeat slot \(maintenance.slot): \(error)"
            }
        }
        return report
    }

    /// Ends an interrupted check: a repair that has written nothing gives its slot back (the
    /// volume is as it was); one that has started writing leaves it, in the repairing phase, so
    /// that hosts stay out of a half-repaired volume until `fsck.vmfs -y` runs to the end.
    private func interrupted(_ error: VMFSError) -> CheckReport {
        try? device.flush()
        if let maintenance, maintenance.isRepairing {
            maintenance.abandon()
            report.interrupted = "\(error.message) after repairs had started: the volume stays closed to hosts "
                + "(heartbeat slot \(maintenance.slot) in maintenance) until fsck.vmfs -y completes"
        } else {
            do throws(VMFSError) {
                try maintenance?.release()
                report.interrupted = "\(error.message); nothing was changed" + (maintenance == nil ? "" : " and the volume is open to hosts again")
            } catch {
                report.interrupted = "\(error.message); nothing was changed, but the repair's heartbeat slot could not be freed "
                    + "(\(error.message)): hosts clear it after its dead interval"
            }
        }
        return report
    }

    /// Claims a heartbeat slot in the maintenance state so that no host mounts the volume while
    /// it is repaired (hosts that are already live are found by the heartbeat phase).
    private func claimMaintenance() throws(VMFSError) {
        let identity = HostIdentity(uuid: HostIdentity.local().uuid, name: "fsck.vmfs on \(HostIdentity.hostName())")
        do {
            maintenance = try MaintenanceClaim.acquire(device: device, header: header, identity: identity)
        } catch where error.code == .noSpace {
            note("no free heartbeat slot to mark the volume as under repair: make sure no host mounts it until fsck.vmfs ends")
        }
    }

    // MARK: Recording

    /// Records a problem that `repair` fixes when repairing.
    func problem(_ structure: String, offset: UInt64?, _ message: String, repair: () throws(VMFSError) -> Void) throws(VMFSError) {
        var repaired = false
        if options.repair {
            try beginRepairing()
            try repair()
            repaired = true
        }
        report.problems.append(CheckReport.Problem(structure: structure, offset: offset, message: message, repaired: repaired))
    }

    /// Records a problem no repair exists for.
    func problem(_ structure: String, offset: UInt64?, _ message: String) {
        report.problems.append(CheckReport.Problem(structure: structure, offset: offset, message: message, repaired: false))
    }

    func note(_ text: String) { report.notes.append(text) }

    /// Called before the first write: moves the repair's slot to the repairing phase, so that
    /// hosts stay out if the repair stops from now on (and learns whether a host took the slot
    /// over while this check was stopped, in which case nothing may be written).
    func beginRepairing() throws(VMFSError) {
        try options.interruption.check("checking \(device.path)")
        try maintenance?.markRepairing()
    }

    /// Throws ``VMFSError/Code/interrupted`` when the check was asked to stop.
    func checkInterruption() throws(VMFSError) { try options.interruption.check("checking \(device.path)") }

    func read(_ address: UInt64, count: Int? = nil) throws(VMFSError) -> [UInt8] {
        try view.read(count: count ?? sectorSize, at: address)
    }

    /// Writes a repaired sector (and its mirror) with a version above both old copies.
    func writeRepaired(_ address: UInt64, _ make: (UInt64) -> [UInt8]) throws(VMFSError) {
        var version = SectorCodec.version(of: try device.read(count: sectorSize, at: address))
        if let mirror = layout.mirror(of: address) {
            version = max(version, SectorCodec.version(of: try device.read(count: sectorSize, at: mirror)))
        }
        let image = make(version &+ 1)
        try device.write(bytes: image, at: address)
        if let mirror = layout.mirror(of: address) { try device.write(bytes: image, at: mirror) }
    }

}
