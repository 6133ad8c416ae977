import Foundation
import Testing
import VMFSTestSupport

private let fastHostFlags = ["--heartbeat-ms", "100", "--dead-ms", "800", "--io-timeout-ms", "300"]

/// `fsck.vmfs -y` and mounting hosts exclude each other through the volume itself: the repair
/// holds a heartbeat slot in the maintenance state, real processes on both sides.
@Suite("fsck.vmfs -y keeps hosts out", .serialized)
struct RepairExclusionTests {
    /// A volume whose host died holding it, so that a repair watches its slot for a while.
    private func volumeWithDeadHost(_ scratch: Scratch) throws -> (image: String, payload: String) {
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "1G", "--journal-size", "1M", image] + fastMkfsFlags).status == 0)
        let payload = scratch.file("payload")
        try Data(repeating: 7, count: 100_000).write(to: URL(fileURLWithPath: payload))
        let victim = try LiveProcess("vmfs-testhost", ["hold", image, "--host-id", "victim", "--file", "x", "--create"] + fastHostFlags)
        #expect(victim.waitForLine(startingWith: "WROTE 10", timeout: 60) != nil)
        victim.kill(SIGKILL)
        victim.wait()
        return (image, payload)
    }

    /// Starts `fsck.vmfs -y` watching the dead host for 20 s and waits until its maintenance slot shows.
    private func startRepair(_ image: String) throws -> LiveProcess {
        let repair = try LiveProcess("fsck.vmfs", ["-y", "--observe-ms", "20000", image])
        var claimed = false
        for _ in 0..<100 where !claimed {
            claimed = try runTool("vmfs", ["hosts", image, "--observe-ms", "0"]).stdout.contains("maintenance")
            if !claimed { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(claimed, "the repair shows in vmfs hosts as a maintenance slot")
        return repair
    }

    private func put(_ image: String, _ payload: String, as name: String) throws -> ToolResult {
        try runTool("vmfs", ["put", image, payload, name, "--host-id", "esx-a"] + fastHostFlags)
    }

    @Test func hostsAreRefusedDuringARepairAndLetInWhenItIsStopped() throws {
        let scratch = Scratch("repair-exclusion")
        let (image, payload) = try volumeWithDeadHost(scratch)
        let repair = try startRepair(image)
        defer { repair.kill(SIGKILL) }
        let during = try put(image, payload, as: "during")
        #expect(during.status != 0)
        #expect(during.stderr.contains("being repaired by fsck.vmfs"), "\(during.output)")

        // Stopped while it was still watching (nothing written): it frees its slot and says so.
        let stopped = Date()
        repair.kill(SIGTERM)
        repair.wait()
        #expect(Date().timeIntervalSince(stopped) < 3)
        #expect(repair.process.terminationReason == .exit && repair.process.terminationStatus == 32, "\(repair.output)")
        #expect(repair.output.contains { $0.contains("nothing was changed") }, "\(repair.output)")
        #expect(try put(image, payload, as: "after").status == 0)

        // A complete repair recovers the dead host; the volume checks clean.
        let fixed = try runTool("fsck.vmfs", ["-y", "--observe-ms", "300", image])
        #expect(fixed.status <= 1, "\(fixed.output)")
        let clean = try runTool("fsck.vmfs", ["-n", image])
        #expect(clean.status == 0, "\(clean.output)")
    }

    /// A repair killed before it wrote anything left the volume as it was: hosts clear its slot
    /// after its dead interval instead of staying out until someone runs fsck.vmfs -y again.
    @Test func aRepairKilledBeforeWritingDoesNotLockHostsOut() throws {
        let scratch = Scratch("repair-killed")
        let (image, payload) = try volumeWithDeadHost(scratch)
        let repair = try startRepair(image)
        repair.kill(SIGKILL)
        repair.wait()
        let after = try put(image, payload, as: "after")
        #expect(after.status == 0, "\(after.output)")
        #expect(try runTool("vmfs", ["hosts", image, "--observe-ms", "0"]).stdout.contains("maintenance") == false)
    }
}
