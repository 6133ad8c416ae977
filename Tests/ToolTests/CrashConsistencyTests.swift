import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

/// What the crash workload's log says each name must look like.
private enum Expected: Equatable {
    case present(size: Int, crc: UInt32)
    case absent
    case unknown
}

private func expectations(from logs: [String]) -> [String: Expected] {
    var state: [String: Expected] = [:]
    for log in logs {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count >= 2 else { continue }
            switch parts[0] {
            case "BEGIN": state[parts[1]] = .unknown
            case "GONE": state[parts[1]] = .absent
            case "DONE" where parts.count == 4:
                if let size = Int(parts[2]), let crc = UInt32(parts[3]) { state[parts[1]] = .present(size: size, crc: crc) }
            default: continue
            }
        }
    }
    return state
}

@Suite("Crash consistency: hosts killed with SIGKILL mid-work", .serialized)
struct CrashConsistencyTests {
    @Test func killedHostsLeaveAConsistentVolumeAndEveryFsyncedByte() throws {
        let scratch = Scratch("crash")
        let image = scratch.file("lun.img")
        #expect(try runTool("mkfs.vmfs", ["--size", "2G", "--journal-size", "1M", image] + fastMkfsFlags).status == 0)
        let timing = ["--heartbeat-ms", "100", "--dead-ms", "800", "--io-timeout-ms", "300"]
        var verifierOptions = MountOptions(host: HostIdentity.local(override: "verifier"))
        verifierOptions.timing = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300)
        var generator = SystemRandomNumberGenerator()
        let kills = 56
        var pendingLogs: [String] = []
        var reusedIdentity = 0
        var checkedFiles = 0
        var replayedTransactions = 0
        var iteration = 0
        var hostID = "child-0"
        while iteration < kills {
            let log = scratch.file("log-\(iteration)")
            pendingLogs.append(log)
            let child = try LiveProcess("vmfs-testhost", ["crash-workload", image, "--host-id", hostID, "--seed", "\(iteration + 1)",
                                                          "--log", log] + timing)
            let ready = child.waitForLine(startingWith: "READY", timeout: 60)
            #expect(ready != nil, "workload did not start: \(child.output.joined(separator: "\n"))")
            Thread.sleep(forTimeInterval: Double(Int.random(in: 5...500, using: &generator)) / 1000)
            child.kill(SIGKILL)
            child.wait()
            #expect(child.output.first { $0.contains("Error") || $0.contains("error") } == nil, "\(child.output)")
            iteration += 1
            // Every fourth time the next host reuses the dead host's identity: it replays its own
            // journal when it mounts, before anyone else looks.
            if iteration % 4 == 1 && iteration < kills {
                reusedIdentity += 1
                continue
            }
            hostID = "child-\(iteration)"
            // A survivor recovers the dead host (it is known dead: it was killed and reaped).
            let verifier = try Volume.mount(path: image, options: verifierOptions)
            for host in try verifier.hosts() where host.state != "free" && host.liveness != "self" {
                try verifier.recover(slot: host.slot, force: true)
            }
            replayedTransactions += verifier.recoveries.reduce(0) { $0 + $1.transactions }
            let expected = expectations(from: pendingLogs)
            let present = Set(try verifier.list().map(\.name))
            for (name, state) in expected {
                switch state {
                case .present(let size, let crc):
                    #expect(present.contains(name), "iteration \(iteration): fsynced file '\(name)' is missing")
                    guard present.contains(name) else { continue }
                    let handle = try verifier.open(name)
                    let bytes = try handle.read(count: size + 1, at: 0)
                    try handle.close()
                    #expect(bytes.count == size, "iteration \(iteration): '\(name)' has \(bytes.count) bytes, fsynced \(size)")
                    #expect(CRC32C.checksum(bytes) == crc, "iteration \(iteration): '\(name)' differs from its fsynced content")
                    checkedFiles += 1
                case .absent:
                    #expect(!present.contains(name), "iteration \(iteration): removed file '\(name)' is back")
                case .unknown:
                    continue
                }
            }
            for name in present { try verifier.remove(name) }
            try verifier.unmount()
            let fsck = try runTool("fsck.vmfs", ["-n", image])
            #expect(fsck.status == 0, "iteration \(iteration): \(fsck.output)")
            if fsck.status != 0 { break }
            pendingLogs.removeAll()
        }
        #expect(iteration >= 50)
        #expect(reusedIdentity > 5)
        #expect(checkedFiles > 40, "too few files reached a durable state to prove anything (\(checkedFiles))")
        #expect(replayedTransactions > 0, "no kill left journal transactions to replay")
        print("crash test: \(iteration) kills, \(reusedIdentity) own-journal replays at mount, \(checkedFiles) fsynced files verified, "
              + "\(replayedTransactions) transactions replayed by survivors")
    }
}
