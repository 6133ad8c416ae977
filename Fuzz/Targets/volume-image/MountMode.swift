@testable import VMFSCore
import FuzzSupport

/// Which host mounts the edited volume for the script of file operations.
///
/// Most inputs mount as a new host and recover the crashed one. One in sixteen (the first byte
/// ≥ 0xF0) mounts as the crashed host itself: it reclaims its own slot, replays its own journal
/// and adopts its file locks (`adoptFileLocks`, what a restarted host agent does), and with bit 3
/// of that byte it hands the membership over (`handOver`) after the script and a third
/// incarnation reclaims and adopts again. Both end with `finishAdoption` and an unmount.
enum MountMode {
    case newHost
    case reclaim(handOver: Bool)

    init(firstByte: UInt8) {
        self = firstByte >= 0xF0 ? .reclaim(handOver: firstByte & 8 != 0) : .newHost
    }

    /// Mounts, runs `script` and unmounts; true when the host gave up for reasons outside the
    /// input (interrupted, fenced, lost its slot), so the consistency verdicts do not apply.
    func run(device: any BlockDevice, seed: SeedVolume, interruption: Interruption, script: (Volume) -> Void) -> Bool {
        switch self {
        case .newHost:
            guard let volume = try? Volume.mount(device: device, options: SeedVolume.mountOptions("fuzz", interruption: interruption)) else {
                return false
            }
            _ = try? volume.recover(slot: seed.crashedSlot, force: true)
            script(volume)
            return Self.leave(volume)
        case .reclaim(let handOver):
            guard let volume = Self.reclaimCrashedHost(device: device, interruption: interruption) else { return false }
            script(volume)
            if !handOver {
                _ = try? volume.finishAdoption()
                return Self.leave(volume)
            }
            if Self.leave(volume, handingOver: true) { return true }
            guard let next = Self.reclaimCrashedHost(device: device, interruption: interruption) else { return false }
            _ = try? next.finishAdoption()
            return Self.leave(next)
        }
    }

    /// The crashed host's next incarnation: same identity, adopting its file locks.
    private static func reclaimCrashedHost(device: any BlockDevice, interruption: Interruption) -> Volume? {
        var options = SeedVolume.mountOptions("crashed", interruption: interruption)
        options.adoptFileLocks = true
        return try? Volume.mount(device: device, options: options)
    }

    /// Unmounts, or hands the membership over; true when that or the membership was disturbed.
    private static func leave(_ volume: Volume, handingOver: Bool = false) -> Bool {
        var disturbed = false
        do {
            if handingOver { try volume.handOver() } else { try volume.unmount() }
        } catch {
            disturbed = SeedVolume.isDisturbance(error)
        }
        return disturbed || volume.eventLog.contains { $0.hasPrefix("lost heartbeat slot") }
    }
}
