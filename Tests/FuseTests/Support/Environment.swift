import Foundation
import Testing

/// What the machine offers the FUSE tests.
enum Environment {
    /// Root, `/dev/fuse` and `fusermount3`: what mounting a FUSE filesystem needs here.
    static var canMountFUSE: Bool {
        geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0 && fusermount != nil && getenv("NO_FUSE") == nil
    }

    static let skipReason: Comment = "needs root, /dev/fuse and fusermount3 (set NO_FUSE=1 to skip)"

    static var fusermount: String? { executable("fusermount3") }

    /// The first executable called `name` in the usual system directories.
    static func executable(_ name: String) -> String? {
        for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin"] {
            let path = directory + "/" + name
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// The directory of the built products (next to the test bundle).
    static let products: URL = {
        let executable = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                             ?? CommandLine.arguments[0])
        return executable.deletingLastPathComponent()
    }()

    static func product(_ name: String) -> String { products.appendingPathComponent(name).path }

    /// The package root (this file is Tests/FuseTests/Support/Environment.swift).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// The outcome of a finished command.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut = false

    var output: String { stdout + stderr }
    var description: String {
        "exit \(status)\(timedOut ? " (timed out)" : "")\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
    }
}

/// A failure of the test harness itself (not of the code under test).
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `executable` to completion (killed after `timeout` seconds) and collects its output.
@discardableResult
func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 300,
         environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    // Files rather than pipes: a daemon started by the command (mount(8) → vmfs-fuse) may keep
    // inherited descriptors open, and a pipe would then never reach end of file.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmfs-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let outPath = directory.appendingPathComponent("out")
    let errPath = directory.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outPath.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
    let out = try FileHandle(forWritingTo: outPath)
    let err = try FileHandle(forWritingTo: errPath)
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let timedOut = !waitForExit(process, timeout: timeout)
    if timedOut {
        process.terminate()
        if !waitForExit(process, timeout: 5) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
    try out.close()
    try err.close()
    return CommandResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOf: outPath, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: errPath, encoding: .utf8)) ?? "", timedOut: timedOut)
}

/// Waits up to `timeout` seconds for `process` to end; true when it did.
func waitForExit(_ process: Process, timeout: TimeInterval) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning {
        if Date() > deadline { return false }
        usleep(10_000)
    }
    return true
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
func eventually(timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if try condition() { return true }
        usleep(20_000)
    } while Date() < deadline
    return try condition()
}

/// A scratch directory removed at the end of a test.
final class Scratch {
    let path: String

    /// - Parameter memory: in `/dev/shm` (a tmpfs: device flushes cost nothing), where it exists.
    init(_ name: String, memory: Bool = false) {
        let parent = memory && access("/dev/shm", W_OK) == 0 ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        path = parent.appendingPathComponent("vmfs-fuse-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// A new empty directory inside the scratch directory.
    func directory(_ name: String) -> String {
        let directory = file(name)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
