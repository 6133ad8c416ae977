import Foundation
import Testing
import HostAgent
import VMFSCore
import VMFSTestSupport

let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The test guest image (built by Tools/scripts/build-guest.sh).
func testGuestImage() throws -> String {
    let process = Process()
    process.executableURL = repositoryRoot.appendingPathComponent("Tools/scripts/build-guest.sh")
    process.arguments = ["--test-guest-only"]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw VMFSError(.io, "build-guest.sh failed") }
    return repositoryRoot.appendingPathComponent(".cache/guest/testguest.elf").path
}

/// A formatted volume image with the test guest on it as `guest.elf`, in a scratch directory that
/// also holds agents' state and run directories.
final class AgentScratch: @unchecked Sendable {
    let directory: URL
    let image: String

    /// - Parameters:
    ///   - device: Format this device (an `iscsi://` LUN) with `mkfsArguments` instead of a new image.
    init(size: String = "8G", device: String? = nil, mkfsArguments: [String] = []) throws {
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("hostd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        image = device ?? directory.appendingPathComponent("lun.img").path
        let made = try runTool("mkfs.vmfs", (device == nil ? ["--size", size, "--heartbeat-interval", "100", "--dead-interval", "800",
                                                              "--io-timeout", "300"] : mkfsArguments) + [image])
        guard made.status == 0 else { throw VMFSError(.io, "mkfs failed: \(made.stderr)") }
        let put = try runTool("vmfs", ["put", "--host-id", "uploader", image, try testGuestImage(), "guest.elf"])
        guard put.status == 0 else { throw VMFSError(.io, "vmfs put failed: \(put.output)") }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// An agent configuration for host `host` with this volume as datastore `ds1`.
    func configuration(host: String, orphanTimeoutMilliseconds: UInt64 = 32_000) -> HostAgent.Configuration {
        let base = directory.appendingPathComponent(host).path
        let settings = AgentContext.Settings(
            host: HostIdentity.local(override: host), vmxPath: toolsDirectory.appendingPathComponent("vmx").path,
            runDirectory: "\(base)/run", stateDirectory: "\(base)/state", orphanTimeoutMilliseconds: orphanTimeoutMilliseconds)
        return HostAgent.Configuration(settings: settings, datastores: [.init(name: "ds1", device: image)])
    }

    /// Reads a file of the volume as another host would.
    func contents(of name: String) throws -> [UInt8] {
        var options = MountOptions(host: HostIdentity.local(override: "reader-\(UUID().uuidString.prefix(4))"))
        options.readOnly = true
        let volume = try Volume.mount(path: image, options: options)
        defer { try? volume.unmount() }
        let handle = try volume.open(name)
        defer { try? handle.close() }
        return try handle.read(count: Int(handle.size), at: 0)
    }
}

/// Waits for `task` to finish and returns it.
func finished(_ agent: HostAgent, _ task: AgentTask, seconds: UInt64 = 60) -> AgentTask? {
    agent.context.tasks.wait(task.id, timeoutNanoseconds: seconds * 1_000_000_000)
}

/// Polls `condition` every 10 ms for up to `seconds`.
func eventually(seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

func mix64(_ value: UInt64) -> UInt64 {
    var x = value &+ 0x9e37_79b9_7f4a_7c15
    x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
    x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
    return x ^ (x >> 31)
}
