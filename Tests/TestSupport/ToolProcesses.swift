public import Foundation
import VMFSCore

/// The directory holding the built tools (next to the test bundle).
public let toolsDirectory: URL = {
    // Benchmarks point the harness at release builds of the tools.
    if let override = ProcessInfo.processInfo.environment["VMFS_TOOLS_DIR"], !override.isEmpty {
        return URL(fileURLWithPath: override, isDirectory: true)
    }
    let executable = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    return executable.deletingLastPathComponent()
}()

/// The result of running a tool.
public struct ToolResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when the run was killed because it did not finish within its timeout (it hung).
    public var timedOut = false
    public var output: String { stdout + stderr }
}

/// Runs a built tool to completion.
///
/// - Parameter timeout: Seconds after which a tool that has not finished is killed (SIGKILL)
///   and the result says `timedOut`: for tests of input that used to make a tool hang.
@discardableResult
public func runTool(_ name: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: Double? = nil) throws -> ToolResult {
    try runSystem(toolsDirectory.appendingPathComponent(name).path, arguments, environment: environment, timeout: timeout)
}

/// Runs a program (a system command such as losetup or mkfs.ext4) to completion.
@discardableResult
public func runSystem(_ path: String, _ arguments: [String], environment: [String: String] = [:],
                      timeout: Double? = nil) throws -> ToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let watchdog = timeout.map { Watchdog(process: process.processIdentifier, seconds: $0) }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    watchdog?.finish()
    return ToolResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self), timedOut: watchdog?.fired ?? false)
}

/// Kills a process with SIGKILL unless it finished within its time.
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var finished = false
    private var killed = false

    init(process: Int32, seconds: Double) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.withLock {
                guard !finished else { return }
                killed = true
                kill(process, SIGKILL)
            }
        }
    }

    /// The process was reaped: it must not be killed any more.
    func finish() { lock.withLock { finished = true } }

    /// Whether the watchdog killed the process.
    var fired: Bool { lock.withLock { killed } }
}

/// A child process whose output lines are read as they come.
public final class LiveProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = ""
    /// The output pipe reached its end (everything the process wrote has been read).
    private var drained = false

    public init(_ name: String, _ arguments: [String]) throws {
        process.executableURL = toolsDirectory.appendingPathComponent(name)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        out.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                self.lock.lock()
                self.drained = true
                self.lock.unlock()
                return
            }
            self.lock.lock()
            self.partial += String(decoding: data, as: UTF8.self)
            while let newline = self.partial.firstIndex(of: "\n") {
                self.lines.append(String(self.partial[..<newline]))
                self.partial = String(self.partial[self.partial.index(after: newline)...])
            }
            self.lock.unlock()
        }
        try process.run()
    }

    public var output: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    /// Waits until a line starting with `prefix` appears; returns it, or nil after `timeout`
    /// seconds, or once the process has exited and all its output has been read without it.
    public func waitForLine(startingWith prefix: String, timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.first(where: { $0.hasPrefix(prefix) }) { return line }
            // An exited process's last lines may still be in the pipe: only its end is final.
            if !process.isRunning && isDrained { return output.first(where: { $0.hasPrefix(prefix) }) }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return nil
    }

    private var isDrained: Bool {
        lock.lock()
        defer { lock.unlock() }
        return drained
    }

    public func kill(_ signal: Int32 = SIGKILL) { Foundation.kill(process.processIdentifier, signal) }

    /// Waits for the process to exit and for its output to be read to the end (a few seconds at
    /// most: a child it left running may keep the pipe open).
    public func wait() {
        process.waitUntilExit()
        let deadline = Date().addingTimeInterval(5)
        while !isDrained && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
    }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }
}

/// A scratch directory removed at the end of a test.
public final class Scratch {
    public let path: String

    public init(_ name: String, base: String = NSTemporaryDirectory()) {
        path = (base as NSString).appendingPathComponent("vmfs-\(name)-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Whether this process runs as root (loop devices, FUSE).
public let isRoot = geteuid() == 0

/// Attaches `image` to a free loop device and returns its path.
public func attachLoop(_ image: String) throws -> String {
    let result = try runSystem("/sbin/losetup", ["--find", "--show", image])
    guard result.status == 0 else { throw VMFSError(.io, "losetup failed: \(result.stderr)") }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

public func detachLoop(_ device: String) {
    _ = try? runSystem("/sbin/losetup", ["-d", device])
}

/// Fast heartbeat timing flags for mkfs.vmfs: renew 100 ms, dead 800 ms, I/O timeout 300 ms.
public let fastMkfsFlags = ["--heartbeat-interval", "100", "--dead-interval", "800", "--io-timeout", "300"]

/// A checksum of a file's bytes and its size (to prove a tool wrote nothing).
public func fingerprint(_ path: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    // FNV-1a over 8-byte words: enough to notice any change.
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    data.withUnsafeBytes { raw in
        var index = 0
        while index + 8 <= raw.count {
            hash = (hash ^ raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)) &* 0x100_0000_01b3
            index += 8
        }
        while index < raw.count {
            hash = (hash ^ UInt64(raw[index])) &* 0x100_0000_01b3
            index += 1
        }
    }
    return "\(data.count):\(hash)"
}
