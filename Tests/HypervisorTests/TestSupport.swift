import Foundation
import Testing
@testable import Hypervisor

/// Facts about the machine the tests run on.
enum Host {
    /// True when /dev/kvm can be opened read-write (set NO_KVM=1 to force the KVM tests to skip).
    static var hasKVM: Bool { access("/dev/kvm", R_OK | W_OK) == 0 && getenv("NO_KVM") == nil }

    /// Open KVM file descriptors (/dev/kvm, VM and vCPU fds) of this process, to check that a
    /// VM releases everything. Other descriptors are ignored: tests run in parallel.
    static var kvmFileDescriptorCount: Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.filter { entry in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)")) ?? ""
            return target.contains("kvm")
        }.count
    }
}

/// Locates (and if needed builds, with Tools/scripts/build-guest.sh) the guest artefacts.
enum GuestArtifacts {
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var cacheDirectory: URL { repositoryRoot.appendingPathComponent(".cache/guest") }

    static func path(_ name: String) -> String { cacheDirectory.appendingPathComponent(name).path }

    private static func runBuildScript(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = repositoryRoot.appendingPathComponent("Tools/scripts/build-guest.sh")
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HypervisorError(.invalidConfiguration, "build-guest.sh \(arguments) failed with status \(process.terminationStatus)")
        }
    }

    /// The test guest ELF (always rebuilt if its sources changed; takes well under a second).
    static func testGuest() throws -> String {
        try runBuildScript(["--test-guest-only"])
        return path("testguest.elf")
    }

    /// The extracted Debian vmlinux, its bzImage and the initramfs.
    static func linux() throws -> (vmlinux: String, bzImage: String, initramfs: String) {
        if !FileManager.default.fileExists(atPath: path("vmlinux"))
            || !FileManager.default.fileExists(atPath: path("initramfs.cpio.gz")) {
            try runBuildScript([])
        }
        return (path("vmlinux"), path("vmlinuz"), path("initramfs.cpio.gz"))
    }
}

/// A temporary directory removed when the value is deallocated.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("hv-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The same mixing function as the test guest (`mix64` in Tools/guest/runtime.c, splitmix64's finalizer).
func mix64(_ value: UInt64) -> UInt64 {
    var x = value &+ 0x9e37_79b9_7f4a_7c15
    x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
    x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
    return x ^ (x >> 31)
}

/// A line that records every level change (for interrupt assertions).
final class RecordingInterruptLine: InterruptLine, @unchecked Sendable {
    private let lock = NSLock()
    private var levels: [Bool] = []

    func setLevel(_ asserted: Bool) {
        lock.lock()
        levels.append(asserted)
        lock.unlock()
    }

    var history: [Bool] {
        lock.lock()
        defer { lock.unlock() }
        return levels
    }
}
