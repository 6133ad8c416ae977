@testable import VMFSCore
import FuzzSupport

/// What a repair promises: `fsck.vmfs -y` that exits 0 or 1 leaves a volume that a host can
/// mount (the repair itself verifies with a second, read-only pass that nothing is left). A
/// repair that exits 4 must say what it left, and must not have "repaired" something that its
/// second look still finds wrong.
enum RepairOracle {
    /// What legal operations promise: a healthy volume stays consistent, whatever arguments they had.
    static func expectClean(_ report: CheckReport, after what: String) {
        guard report.exitCode == 0 else {
            fatalError("fuzz oracle: fsck after \(what) exits \(report.exitCode): \(report.problems.prefix(4)) \(report.operationalError ?? "")")
        }
    }

    static func verify(_ report: CheckReport, device: any BlockDevice, interruption: Interruption) {
        switch report.exitCode {
        case 0, 1:
            do {
                let volume = try Volume.mount(device: device, options: SeedVolume.mountOptions("after-repair", interruption: interruption))
                _ = try volume.list()
                try volume.unmount()
            } catch where SeedVolume.isDisturbance(error) {
                return
            } catch {
                fatalError("fuzz oracle: fsck -y exited \(report.exitCode) but the volume does not mount: \(error)")
            }
        case 4:
            guard report.problems.contains(where: { !$0.repaired }) else {
                fatalError("fuzz oracle: fsck -y exited 4 without naming what it left")
            }
            // A repair that cannot fix what it fixed (issue 9, item 4: fsck -y exiting 4 forever).
            if let left = report.problems.first(where: { $0.message.hasPrefix("still wrong after repair") }) {
                fatalError("fuzz oracle: fsck -y leaves what it repaired: \(left.structure): \(left.message)")
            }
        default:
            break
        }
    }
}
