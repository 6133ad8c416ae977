import Foundation
import Testing
import VMFSTestSupport

private let fastHostFlags = ["--heartbeat-ms", "100", "--dead-ms", "800", "--io-timeout-ms", "300"]

/// `fsck.vmfs -y` and mounting hosts exclude each other through the volume itself: the repair
/// holds a heartbeat slot in the maintenance state, real processes on both sides.
@Suite("fsck.vmfs -y keeps hosts out", .serialized)
struct RepairExclusionTests {
    @Test func hostsAreRefusedDuringARepairAndAfterAnInterruptedOne() throws {
        let scratch = Scratch("repair-exclusion")
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "1G", "--journal-size", "1M", image] + fastMkfsFlags).status == 0)
        let payload = scratch.file("payload")
        try Data(repeating: 7, count: 100_000).write(to: URL(fileURLWithPath: payload))

        // A host dies holding the volume, so that the repair watches its slot for a while.
        let victim = try LiveProcess("vmfs-testhost", ["hold", image, "--host-id", "victim", "--file", "x", "--create"] + fastHostFlags)
        #expect(victim.waitForLine(startingWith: "WROTE 10", timeout: 60) != nil)
        victim.kill(SIGKILL)
        victim.wait()

        let repair = try LiveProcess("fsck.vmfs", ["-y", "--observe-ms", "20000", image])
        defer { repair.kill(SIGKILL) }
        var claimed = false
        for _ in 0..<100 where !claimed {
            claimed = try runTool("vmfs", ["hosts", image, "--observe-ms", "0"]).stdout.contains("maintenance")
            if !claimed { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(claimed, "the repair shows in vmfs hosts as a maintenance slot")

        let during = try runTool("vmfs", ["put", image, payload, "during", "--host-id", "esx-a"] + fastHostFlags)
        #expect(during.status != 0)
        #expect(during.stderr.contains("being repaired by fsck.vmfs"), "\(during.output)")

        // The repair is killed: hosts stay out, because it may have left the volume half-fixed.
        repair.kill(SIGKILL)
        repair.wait()
        let after = try runTool("vmfs", ["put", image, payload, "after", "--host-id", "esx-a"] + fastHostFlags)
        #expect(after.status != 0 && after.stderr.contains("run fsck.vmfs -y"), "\(after.output)")
        #expect(try runTool("fsck.vmfs", ["-n", "--observe-ms", "300", image]).status == 4)

        // A complete repair lets them in again.
        let fixed = try runTool("fsck.vmfs", ["-y", "--observe-ms", "300", image])
        #expect(fixed.status == 1, "\(fixed.output)")
        #expect(try runTool("vmfs", ["put", image, payload, "done", "--host-id", "esx-a"] + fastHostFlags).status == 0)
        let clean = try runTool("fsck.vmfs", ["-n", image])
        #expect(clean.status == 0, "\(clean.output)")
    }
}
