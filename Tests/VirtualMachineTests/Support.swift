import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport

let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0 && getenv("NO_KVM") == nil

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The test guest image, built by Tools/scripts/build-guest.sh if needed.
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

/// A scratch directory with a formatted volume image.
final class VolumeImage {
    let directory: URL
    let path: String

    init(size: String = "8G") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmfs-vm-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent("lun.img").path
        let made = try runTool("mkfs.vmfs", ["--size", size, "--heartbeat-interval", "100", "--dead-interval", "800",
                                             "--io-timeout", "300", path])
        guard made.status == 0 else { throw VMFSError(.io, "mkfs failed: \(made.stderr)") }
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func mount(_ host: String) throws -> Volume {
        var options = MountOptions(host: HostIdentity.local(override: host))
        options.timing = HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300)
        return try Volume.mount(path: path, options: options)
    }

    /// The text of a file on the volume.
    func text(of name: String) throws -> String {
        let volume = try mount("reader-\(UUID().uuidString.prefix(4))")
        defer { try? volume.unmount() }
        let handle = try volume.open(name)
        return String(decoding: try handle.read(count: Int(handle.size), at: 0), as: UTF8.self)
    }
}

func mix64(_ value: UInt64) -> UInt64 {
    var x = value &+ 0x9e37_79b9_7f4a_7c15
    x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
    x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
    return x ^ (x >> 31)
}
