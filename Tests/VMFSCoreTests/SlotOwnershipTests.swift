import Dispatch
import Foundation
import Synchronization
import Testing
@testable import VMFSCore

/// Threads of one host opening a file by slot (as FUSE does, by inode) while others replace it
/// by rename or unlink it: the host's descriptor lock must have one owner at a time.
@Suite("One owner per descriptor slot on a host")
struct SlotOwnershipTests {
    @Test func opensByInodeRacingReplacingRenamesLeaveAConsistentVolume() throws {
        // Regression (issue 10): an open registered a file that a replacing rename was freeing
        // (both "held" the per-host lock), wrote its old descriptor back and allocated into its
        // old map: fsck found blocks used twice, nameless descriptors and orphans never freed.
        let device = try makeMemoryVolume(size: 4 << 30)
        let volume = try Volume.mount(device: device, options: hostOptions("host-a"))
        let failures = Mutex<[String]>([])
        let names = ["a", "b", "c"]
        let deadline = Date().addingTimeInterval(3)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var round = 0
            while Date() < deadline {
                round += 1
                let name = names[(worker + round) % names.count]
                do throws(VMFSError) {
                    if worker % 2 == 0 {
                        // Replace: write a temporary, then rename it over the name.
                        let temporary = "tmp-\(worker)"
                        let handle = try volume.create(temporary, access: .readWrite)
                        try handle.write(bytes: pattern(round % 3 == 0 ? 3 << 20 : 5000, seed: UInt64(round)), at: 0)
                        try handle.close()
                        if round % 5 == 0 { try volume.remove(temporary) } else { try volume.rename(temporary, to: name) }
                    } else {
                        // Open what the name names, by slot and generation, and write into it.
                        let status = try volume.status(of: name)
                        let handle = try volume.open(slot: status.slot, generation: status.generation, access: .readWrite)
                        try handle.write(bytes: pattern(2 << 20, seed: UInt64(round)), at: 1 << 20)
                        try handle.close()
                    }
                } catch where [.notFound, .staleHandle, .busy, .alreadyExists].contains(error.code) {
                    continue  // lost a race with another worker: allowed
                } catch {
                    failures.withLock { $0.append("worker \(worker) round \(round): \(error)") }
                    return
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        try volume.unmount()
        var check = CheckOptions()
        check.force = true
        let report = VolumeChecker(device: device.readOnlyView(), options: check).run()
        #expect(report.exitCode == 0, "\(report.problems.map(\.message))")
    }
}
