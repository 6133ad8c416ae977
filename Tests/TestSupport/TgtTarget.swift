public import Foundation
import VMFSCore

/// A real iSCSI target for tests and benchmarks: a `tgtd` process of its own (Debian `tgt`)
/// with LUNs backed by image files, listening on loopback on a free port, or inside a network
/// namespace of a ``NetworkLab``. Stopped (and its control socket removed) on ``stop()`` or deinit.
public final class TgtTarget: @unchecked Sendable {
    /// Address and port initiators connect to.
    public let host: String
    public let port: Int
    /// tgtd's management port (`-C`): its control socket is `/var/run/tgtd/socket.PORT`.
    public let controlPort: Int
    public let scratch: Scratch
    private let process: Process
    private let log: String
    private var nextTID = 1
    private var stopped = false

    /// Whether `tgtd` and `tgtadm` are installed (Tools/scripts/setup.sh installs them).
    public static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/tgtd") && FileManager.default.isExecutableFile(atPath: "/usr/sbin/tgtadm")
    }

    /// Starts tgtd.
    ///
    /// - Parameters:
    ///   - ioThreads: tgtd's `--nr_iothreads` (worker threads per LUN; tgt's default is 16).
    ///   - lab: Run tgtd inside machine `machine` of this network lab (its address is the portal).
    public init(ioThreads: Int? = nil, lab: NetworkLab? = nil, machine: Int = 1) throws {
        scratch = Scratch("tgt")
        log = scratch.file("tgtd.log")
        controlPort = Int.random(in: 20_000..<30_000)
        if let lab {
            host = lab.address(machine)
            port = 3260
        } else {
            host = "127.0.0.1"
            port = Int.random(in: 30_000..<40_000)
        }
        var arguments = ["/usr/sbin/tgtd", "-f", "-C", "\(controlPort)", "--iscsi", "portal=\(host):\(port)"]
        if let ioThreads { arguments += ["--nr_iothreads", "\(ioThreads)"] }
        if let lab { arguments = lab.command(in: machine, arguments) }
        process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        FileManager.default.createFile(atPath: log, contents: nil)
        let output = FileHandle(forWritingAtPath: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Ready once the control socket answers.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let result = try? admin(["--op", "show", "--mode", "sys"]), result.status == 0 { return }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        stop()
        throw VMFSError(.io, "tgtd did not start: \(text)")
    }

    deinit { stop() }

    /// Stops tgtd: every session ends.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: "/var/run/tgtd/socket.\(controlPort)")
        try? FileManager.default.removeItem(atPath: "/var/run/tgtd/socket.\(controlPort).lock")
    }

    /// Runs `tgtadm` against this tgtd.
    @discardableResult
    public func admin(_ arguments: [String]) throws -> ToolResult {
        try runSystem("/usr/sbin/tgtadm", ["-C", "\(controlPort)", "--lld", "iscsi"] + arguments, timeout: 20)
    }

    private func adminChecked(_ arguments: [String]) throws {
        let result = try admin(arguments)
        guard result.status == 0 else { throw VMFSError(.io, "tgtadm \(arguments.joined(separator: " ")) failed: \(result.output)") }
    }

    /// A target with its LUNs.
    public struct Target: Sendable {
        public let tid: Int
        public let iqn: String
        /// Backing image of LUN n at `images[n - 1]`.
        public let images: [String]
    }

    /// Creates a target with `luns` LUNs (1…) backed by sparse image files of `size` bytes,
    /// open to every initiator, or only to CHAP user `user`.
    @discardableResult
    public func addTarget(name: String = "lun", luns: Int = 1, size: UInt64 = 2 << 30, thin: Bool = true,
                          chap: (user: String, password: String)? = nil) throws -> Target {
        let tid = nextTID
        nextTID += 1
        let iqn = "iqn.2026-11.org.vmfs-sw.test:\(name)-\(tid)"
        try adminChecked(["--op", "new", "--mode", "target", "--tid", "\(tid)", "-T", iqn])
        var images: [String] = []
        for lun in 1...luns {
            let image = scratch.file("\(name)-\(tid)-\(lun).img")
            FileManager.default.createFile(atPath: image, contents: nil)
            guard truncate(image, off_t(size)) == 0 else { throw VMFSError(.io, "cannot size \(image)") }
            try adminChecked(["--op", "new", "--mode", "logicalunit", "--tid", "\(tid)", "--lun", "\(lun)", "-b", image])
            if thin {
                try adminChecked(["--op", "update", "--mode", "logicalunit", "--tid", "\(tid)", "--lun", "\(lun)",
                                  "--params", "thin_provisioning=1"])
            }
            images.append(image)
        }
        try adminChecked(["--op", "bind", "--mode", "target", "--tid", "\(tid)", "-I", "ALL"])
        if let chap {
            try adminChecked(["--op", "new", "--mode", "account", "--user", chap.user, "--password", chap.password])
            try adminChecked(["--op", "bind", "--mode", "account", "--tid", "\(tid)", "--user", chap.user])
        }
        return Target(tid: tid, iqn: iqn, images: images)
    }

    /// The URL of LUN `lun` of `target`.
    public func url(_ target: Target, lun: Int = 1, user: String? = nil, password: String? = nil) -> String {
        var credentials = ""
        if let user { credentials = password.map { "\(user)%\($0)@" } ?? "\(user)@" }
        return "iscsi://\(credentials)\(host):\(port)/\(target.iqn)/\(lun)"
    }

    /// The iSCSI sessions of `target` (tgt's session ids).
    public func sessions(of target: Target) throws -> [Int] {
        let result = try admin(["--op", "show", "--mode", "conn", "--tid", "\(target.tid)"])
        return result.stdout.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count >= 2, words[0] == "Session:" else { return nil }
            return Int(words[1])
        }
    }

    /// Drops every connection of `target` (initiators see the TCP connection close).
    public func dropConnections(of target: Target) throws {
        for session in try sessions(of: target) {
            _ = try admin(["--op", "delete", "--mode", "conn", "--tid", "\(target.tid)", "--sid", "\(session)", "--cid", "0"])
        }
    }

    /// tgtd's log so far (for failure messages).
    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}
