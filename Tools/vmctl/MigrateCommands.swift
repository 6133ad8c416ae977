import ArgumentParser
import FoundationEssentials
import Glibc
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import VMFSToolSupport

/// `vmctl migrate VM --to HOST`: live migration through the source host's agent, with live
/// progress (transferred, remaining, dirty rate, round, expected downtime) until it ends.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Live-migrate a running VM to another host that shares its volume (docs/MIGRATION.md).",
    )

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The VM's name or UUID.") var vm: String
    @Option(name: .customLong("to"), help: "The destination agent: https://HOST[:PORT] (HOST an IPv4 address).") var destination: String
    @Option(name: .customLong("to-token"), help: "Bearer token of the destination agent (default: $VMHOSTD_DESTINATION_TOKEN, else --token).")
    var destinationToken: String?
    @Option(name: .customLong("to-ca"), help: "PEM certificate of the destination agent, passed to the source agent.") var destinationCA: String?
    @Flag(name: .customLong("to-insecure"), help: "Let the source agent skip verifying the destination's certificate.") var destinationInsecure = false
    @Option(help: "Downtime budget in ms (default 50).") var downtime: Int64?
    @Option(help: "TCP streams (1 – 16, default 2).") var streams: Int?
    @Option(name: .customLong("max-bandwidth"), help: "Cap in bytes per second (default: none).") var maximumBandwidth: Int64?
    @Flag(name: .customLong("no-post-copy"), help: "Fail rather than switch to post-copy when pre-copy does not converge.") var noPostCopy = false
    @Flag(name: .customLong("no-auto-converge"), help: "Do not throttle the vCPUs.") var noAutoConverge = false
    @Flag(name: .customLong("no-wait"), help: "Print the task and return at once.") var noWait = false
    @Flag(help: "Cancel the VM's migration instead (before its switchover only).") var cancel = false

    func run() async throws {
        let token = destinationToken ?? ProcessInfo.processInfo.environment["VMHOSTD_DESTINATION_TOKEN"] ?? agent.token
            ?? ProcessInfo.processInfo.environment["VMHOSTD_TOKEN"]
        try await withAgent(try agent.endpoint()) { client in
            if cancel {
                _ = try await client.cancelVMMigration(path: .init(vm: vm)).noContent
                print("cancelling the migration of '\(vm)'")
                return
            }
            guard let token else { throw ValidationError("the destination needs a token: --to-token or $VMHOSTD_DESTINATION_TOKEN") }
            var pem: String?
            if let destinationCA {
                guard let data = FileManager.default.contents(atPath: destinationCA) else { throw ValidationError("cannot read \(destinationCA)") }
                pem = String(decoding: data, as: UTF8.self)
            }
            let options = Components.Schemas.MigrationOptions(
                downtimeBudgetMilliseconds: downtime, streams: streams, maximumBandwidthBytesPerSecond: maximumBandwidth,
                autoConverge: noAutoConverge ? false : nil, postCopy: noPostCopy ? false : nil)
            let request = Components.Schemas.MigrateRequest(destination: destination, token: token, caCertificate: pem,
                                                             insecure: destinationInsecure ? true : nil, options: options)
            var task = try await client.migrateVM(path: .init(vm: vm), body: .json(request)).accepted.body.json
            if noWait {
                print(task.id)
                return
            }
            while task.state == .queued || task.state == .running {
                if let status = try? await client.getVMMigration(path: .init(vm: vm)).ok.body.json {
                    ToolOutput.error(Self.line(status))
                }
                task = try await client.getTask(path: .init(task: task.id), query: .init(waitSeconds: 1)).ok.body.json
            }
            let status = try await client.getVMMigration(path: .init(vm: vm)).ok.body.json
            guard task.state == .success else {
                ToolOutput.error("vmctl: migration of '\(vm)' failed: \(task.error?.message ?? status.message ?? "unknown error")".escapingControlCharacters)
                throw ExitCode(1)
            }
            let p = status.progress
            print("VM '\(vm)' migrated to \(status.destinationHost): \(p.round + 1) rounds, \(p.transferredBytes) bytes sent, "
                  + "downtime \(status.downtimeMilliseconds.map { "\(Self.tenths($0)) ms" } ?? "unknown")\(status.postCopy ? ", post-copy" : "")")
        }
    }

    /// `value` with one decimal.
    static func tenths(_ value: Double) -> String {
        let scaled = Int((value * 10).rounded())
        return "\(scaled / 10).\(abs(scaled % 10))"
    }

    /// One progress line: state, round, transferred, remaining, dirty rate, expected downtime.
    static func line(_ status: Components.Schemas.MigrationStatus) -> String {
        let p = status.progress
        let mib = { (bytes: Int64) in "\(tenths(Double(bytes) / 1_048_576)) MiB" }
        return "\(status.state.rawValue): round \(p.round), sent \(mib(p.transferredBytes)), remaining \(mib(p.remainingBytes)), "
            + "dirty \(mib(p.dirtyRateBytesPerSecond))/s, link \(mib(p.bandwidthBytesPerSecond))/s, "
            + "expected downtime \(tenths(p.expectedDowntimeMilliseconds)) ms" + (p.throttlePercent > 0 ? ", throttled \(p.throttlePercent) %" : "")
    }
}
