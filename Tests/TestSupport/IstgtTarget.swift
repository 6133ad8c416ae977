public import Foundation
import VMFSCore

/// A second real iSCSI target for tests and benchmarks: an `istgt` process of its own (Debian
/// `istgt`) on loopback, with one LUN backed by a sparse image file. Used where tgt falls short:
/// tgt refuses COMPARE AND WRITE (its opcode table leaves 0x89 out), istgt executes it, so the
/// ATS method runs against istgt. Stopped on ``stop()`` or deinit.
public final class IstgtTarget: @unchecked Sendable {
    public let host = "127.0.0.1"
    public let port: Int
    public let scratch: Scratch
    /// The backing image of LUN 0.
    public let image: String
    public static let iqn = "iqn.2026-11.org.vmfs-sw.istgt:disk1"
    private let process: Process
    private let log: String
    private var stopped = false

    /// Whether `istgt` is installed (Tools/scripts/setup.sh installs it).
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/istgt") }

    /// Starts istgt with one LUN of `size` bytes.
    public init(size: UInt64 = 2 << 30) throws {
        scratch = Scratch("istgt")
        log = scratch.file("istgt.log")
        image = scratch.file("lun0.img")
        port = Int.random(in: 40_000..<50_000)
        FileManager.default.createFile(atPath: image, contents: nil)
        guard truncate(image, off_t(size)) == 0 else { throw VMFSError(.io, "cannot size \(image)") }
        let config = scratch.file("istgt.conf")
        let auth = scratch.file("auth.conf")
        FileManager.default.createFile(atPath: auth, contents: nil)
        let text = """
            [Global]
              NodeBase "iqn.2026-11.org.vmfs-sw.istgt"
              PidFile \(scratch.file("istgt.pid"))
              AuthFile \(auth)
              MediaDirectory \(scratch.path)
              Timeout 30
              NopInInterval 20
              DiscoveryAuthMethod None
              MaxSessions 64
              MaxConnections 4
              MaxR2T 32
              MaxOutstandingR2T 16
              DefaultTime2Wait 2
              DefaultTime2Retain 60
              FirstBurstLength 262144
              MaxBurstLength 1048576
              MaxRecvDataSegmentLength 262144
              InitialR2T Yes
              ImmediateData Yes
              DataPDUInOrder Yes
              DataSequenceInOrder Yes
              ErrorRecoveryLevel 0
            [UnitControl]
              AuthMethod None
              Portal UC1 127.0.0.1:\(port + 1)
              Netmask 127.0.0.1
            [PortalGroup1]
              Portal DA1 127.0.0.1:\(port)
            [InitiatorGroup1]
              InitiatorName "ALL"
              Netmask 127.0.0.0/8
            [LogicalUnit1]
              TargetName disk1
              Mapping PortalGroup1 InitiatorGroup1
              AuthMethod None
              UnitType Disk
              QueueDepth 32
              LUN0 Storage \(image) \(size >> 20)MB

            """
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/istgt")
        process.arguments = ["-c", config, "-D", "-q"]
        FileManager.default.createFile(atPath: log, contents: nil)
        let output = FileHandle(forWritingAtPath: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Ready once the portal accepts a login.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let result = try? runSystem("/usr/bin/iscsi-inq", [url]), result.status == 0 { return }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let started = logText
        stop()
        throw VMFSError(.io, "istgt did not start: \(started)")
    }

    deinit { stop() }

    /// Stops istgt: every session ends.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// The URL of LUN 0.
    public var url: String { "iscsi://\(host):\(port)/\(Self.iqn)/0" }

    /// istgt's log so far (for failure messages).
    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}
