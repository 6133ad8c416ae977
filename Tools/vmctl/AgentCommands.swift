import ArgumentParser
import FoundationEssentials
import Glibc
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import VMFSToolSupport

/// A power operation through the agent, waited for unless `--no-wait`.
protocol PowerCommand: AsyncParsableCommand {
    var agent: AgentOptions { get }
    var vm: String { get }
    var noWait: Bool { get }
    static var verb: String { get }
    func start(_ client: Client) async throws -> Components.Schemas.Task
}

extension PowerCommand {
    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            let task = try await start(client)
            if noWait {
                print(task.id)
                return
            }
            _ = try await wait(for: task, client: client, what: "\(Self.verb) of '\(vm)'")
            let summary = try await client.getVM(path: .init(vm: vm)).ok.body.json.summary
            print("VM '\(summary.name.escapingControlCharacters)': \(summary.powerState.rawValue)")
        }
    }
}

struct PowerOn: PowerCommand {
    static let configuration = CommandConfiguration(commandName: "power-on", abstract: "Power a VM on through the host agent.")
    static let verb = "power-on"
    @OptionGroup var agent: AgentOptions
    @Flag(name: .customLong("no-wait"), help: "Print the task and return at once.") var noWait = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func start(_ client: Client) async throws -> Components.Schemas.Task {
        try await client.powerOnVM(path: .init(vm: vm)).accepted.body.json
    }
}

struct PowerOff: PowerCommand {
    static let configuration = CommandConfiguration(commandName: "power-off", abstract: "Power a VM off through the host agent (hard).")
    static let verb = "power-off"
    @OptionGroup var agent: AgentOptions
    @Flag(name: .customLong("no-wait"), help: "Print the task and return at once.") var noWait = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func start(_ client: Client) async throws -> Components.Schemas.Task {
        try await client.powerOffVM(path: .init(vm: vm)).accepted.body.json
    }
}

struct Reset: PowerCommand {
    static let configuration = CommandConfiguration(commandName: "reset", abstract: "Reset a running VM through the host agent.")
    static let verb = "reset"
    @OptionGroup var agent: AgentOptions
    @Flag(name: .customLong("no-wait"), help: "Print the task and return at once.") var noWait = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func start(_ client: Client) async throws -> Components.Schemas.Task {
        try await client.resetVM(path: .init(vm: vm)).accepted.body.json
    }
}

struct Console: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a VM's serial console (with --follow, as it comes), or type into it.")
    @OptionGroup var agent: AgentOptions
    @Flag(name: [.short, .long], help: "Keep printing new output until the VM stops or you interrupt.") var follow = false
    @Option(help: "Send this text (a newline is added) to the console instead of printing it.") var send: String?
    @Argument(help: "The VM's name or UUID.") var vm: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            if let send {
                _ = try await client.writeConsole(path: .init(vm: vm), body: .binary(HTTPBody(Array((send + "\n").utf8)))).noContent
                return
            }
            let body = try await client.readConsole(path: .init(vm: vm), query: .init(follow: follow)).ok.body.binary
            for try await chunk in body {
                writeOut(chunk)
            }
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "CPU, memory and disk figures of a VM, or of the host without a VM.")
    @OptionGroup var agent: AgentOptions
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "The VM's name or UUID (omit for the host).") var vm: String?

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            guard let vm else {
                let host = try await client.getHostStatistics().ok.body.json
                if json { return ToolOutput.json(host) }
                print("cpus \(host.cpuCount), load \(host.loadAverage.map { decimal($0, places: 2) }.joined(separator: " ")), "
                      + "memory available \(formatSize(UInt64(max(0, host.memoryAvailableBytes)))) of \(formatSize(UInt64(max(0, host.memoryTotalBytes)))), "
                      + "VMs running \(host.vmsRunning) of \(host.vmsRegistered), agent resident \(formatSize(UInt64(max(0, host.agentResidentBytes))))")
                return
            }
            let statistics = try await client.getVMStatistics(path: .init(vm: vm)).ok.body.json
            if json { return ToolOutput.json(statistics) }
            print("\(statistics.powerState.rawValue), up \(decimal(statistics.uptimeSeconds, places: 1)) s, "
                  + "CPU \(decimal(statistics.cpuSeconds, places: 2)) s, resident \(formatSize(UInt64(max(0, statistics.residentBytes))))")
            for (index, disk) in statistics.disks.enumerated() {
                print("disk \(index): \(disk.reads) reads (\(formatSize(UInt64(max(0, disk.bytesRead))))), \(disk.writes) writes "
                      + "(\(formatSize(UInt64(max(0, disk.bytesWritten))))), \(disk.flushes) flushes, \(disk.errors) errors")
            }
        }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The host's events (power changes, crashes, lock losses, volumes).")
    @OptionGroup var agent: AgentOptions
    @Flag(name: [.short, .long], help: "Keep printing new events as they happen.") var follow = false
    @Option(help: "Only events after this sequence number.") var since: Int64 = 0
    @Flag(help: "Print the raw JSON lines.") var json = false

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            let body = try await client.listEvents(query: .init(since: since, follow: follow)).ok.body.applicationJsonl
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            var pending: [UInt8] = []
            for try await chunk in body {
                pending += chunk
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = Array(pending[..<newline])
                    pending.removeSubrange(...newline)
                    if json {
                        print(String(decoding: line, as: UTF8.self))
                    } else if let event = try? decoder.decode(Components.Schemas.Event.self, from: Data(line)) {
                        print("\(event.sequence) \(event.time) \(event.severity.rawValue) \(event.kind): \(event.message)".escapingControlCharacters)
                    }
                }
            }
        }
    }
}

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Register a VM with the host agent from its files on a volume.")
    @OptionGroup var agent: AgentOptions
    @Option(help: "The volume's name on the agent.") var datastore: String
    @Argument(help: "The VM's name (NAME.vmx on the volume).") var name: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            let vm = try await client.registerVM(body: .json(.init(volume: datastore, name: name))).created.body.json
            print("registered VM '\(vm.name.escapingControlCharacters)' as \(vm.id)")
        }
    }
}

struct Unregister: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unregister a powered-off VM from the host agent (its files stay unless --delete-files).")
    @OptionGroup var agent: AgentOptions
    @Flag(name: .customLong("delete-files"), help: "Also remove the VM's files from the volume.") var deleteFiles = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            _ = try await client.unregisterVM(path: .init(vm: vm), query: .init(deleteFiles: deleteFiles)).noContent
        }
    }
}
