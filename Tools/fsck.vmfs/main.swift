import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// `fsck.vmfs`: checks and repairs a VMFS volume.
struct CheckFilesystem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.vmfs",
        abstract: "Check a VMFS volume and optionally repair it.",
        discussion: """
            Checks every structure: header and backup header, checksums of every metadata sector, \
            heartbeat slots and journals, lock records, the name table and file descriptors with their \
            mirror copies, every block map against the allocation bitmaps (leaked blocks, blocks used \
            twice, blocks past the end), and names.

            -n never writes: a crashed host's journal is replayed in memory only, so the rest of the \
            volume is checked as recovery will leave it. -y repairs: it replays journals of crashed \
            hosts, releases their locks, restores damaged sectors from their mirror or backup, and \
            rebuilds bitmaps from the block maps. -y refuses to run while other hosts are alive.

            SIGINT and SIGTERM stop the check within a moment: a repair that has not written yet \
            frees its heartbeat slot; one that has keeps hosts out until fsck.vmfs -y completes.

            Exit codes (as fsck(8)): 0 clean, 1 errors corrected, 4 errors left uncorrected, \
            8 operational error, 32 interrupted.
            """)

    @Flag(name: .customShort("n"), help: "Check only; never write (the default).")
    var noChanges = false

    @Flag(name: .customShort("y"), help: "Repair every problem found.")
    var yes = false

    @Flag(name: [.customShort("f"), .customLong("force")],
          help: "Treat hosts that still hold heartbeat slots as dead without watching them (only when they are known to be down).")
    var force = false

    @Option(name: .customLong("observe-ms"), help: "How long to watch heartbeat slots that claim a live host.")
    var observeMs: UInt64?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("no-progress"), help: "Do not show a progress indicator on a terminal.")
    var noProgress = false

    @Argument(help: "Block device or image file.")
    var device: String

    func validate() throws {
        if noChanges && yes { throw ValidationError("-n and -y exclude each other") }
    }

    func run() throws {
        let target: any BlockDevice
        do {
            target = try DeviceOpener.open(device, readOnly: !yes)
        } catch {
            ToolOutput.error("fsck.vmfs: error: \(error.description)")
            throw ExitCode(8)
        }
        var options = CheckOptions()
        options.repair = yes
        options.force = force
        options.observeMilliseconds = observeMs
        let showProgress = !noProgress && !json && ToolOutput.stderrIsTerminal
        let progress: ((String, Double) -> Void)? = showProgress ? { phase, fraction in
            let percent = Int(fraction * 100)
            FileHandle.standardError.write(Data("\r\u{1B}[K\(percent)% \(phase)".utf8))
            if fraction >= 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        } : nil
        Interruption.installSignalHandlers()
        let report = VolumeChecker(device: target, options: options, progress: progress).run()
        if json {
            struct Output: Encodable {
                var report: CheckReport
                var exitCode: Int32
            }
            ToolOutput.json(Output(report: report, exitCode: report.exitCode))
        } else {
            print(render(report))
        }
        throw ExitCode(report.exitCode)
    }

    private func render(_ report: CheckReport) -> String {
        var lines: [String] = []
        if let interrupted = report.interrupted {
            lines.append("fsck.vmfs: \(device): \(interrupted)")
            return lines.joined(separator: "\n")
        }
        if let failure = report.operationalError {
            lines.append("fsck.vmfs: \(device): cannot check: \("\(failure)".escapingControlCharacters)")
            return lines.joined(separator: "\n")
        }
        for problem in report.problems {
            let place = problem.offset.map { " at byte \($0) (0x\(String($0, radix: 16)))" } ?? ""
            let status = problem.repaired ? "FIXED" : (yes ? "NOT FIXED" : "ERROR")
            lines.append("\(status): \(problem.structure)\(place): \(problem.message.escapingControlCharacters)")
        }
        for note in report.notes { lines.append("note: \(note.escapingControlCharacters)") }
        if report.replayedTransactions > 0 {
            lines.append("\(yes ? "replayed" : "would replay") \(report.replayedTransactions) journal transaction(s)")
        }
        let summary: String
        switch report.exitCode {
        case 0: summary = "clean"
        case 1: summary = "\(report.problems.count) problem(s) corrected"
        default: summary = "\(report.problems.filter { !$0.repaired }.count) problem(s) left uncorrected"
            + (yes ? "" : " (run fsck.vmfs -y to repair)")
        }
        lines.append("\(device): \(summary): \(report.files) files, \(report.usedBlocks) data blocks, "
                     + "\(report.usedPointerBlocks) pointer blocks in use")
        return lines.joined(separator: "\n")
    }
}

CheckFilesystem.main()
