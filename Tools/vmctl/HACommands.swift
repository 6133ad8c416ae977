import ArgumentParser
import FoundationEssentials
import HostAgentAPI
import HostAgentClient
import OpenAPIRuntime
import VMFSToolSupport

/// `vmctl ha …`: the HA cluster through a member's agent.
struct HA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ha", abstract: "The HA cluster: status, configuration, protected VMs.",
        subcommands: [HAStatusCommand.self, HAConfigure.self, HAProtect.self])
}

struct HAStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Members, protected VMs and where they run, failover capacity, last failovers.")
    @OptionGroup var agent: AgentOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            let status = try await client.getHA().ok.body.json
            if json { return ToolOutput.json(status) }
            guard status.configured else {
                print("no HA cluster is configured on this host's volumes")
                return
            }
            print("cluster \(status.cluster ?? "") (generation \(status.generation ?? 0)): failover capacity "
                  + "\(status.failoverAvailableBytes >> 20) MiB for \(status.failoverRequiredBytes >> 20) MiB of protected VMs "
                  + "after \(status.settings?.failuresToTolerate ?? 0) failure(s): \(status.failoverCapacityOK ? "ok" : "NOT ENOUGH")")
            var members = TextTable(header: ["MEMBER", "LIVENESS", "MAINTENANCE", "CAPACITY", "USED", "VMS"])
            for member in status.members {
                members.add([member.name, member.liveness, member.maintenance ? "yes" : "no",
                             member.capacityMemoryBytes.map { "\($0 >> 20) MiB" } ?? "-", member.usedMemoryBytes.map { "\($0 >> 20) MiB" } ?? "-",
                             "\(member.running.count)"])
            }
            print(members.render())
            var vms = TextTable(header: ["VM", "PROTECTED", "PRIORITY", "MONITORING", "WANTED", "RUNNING ON"])
            for vm in status.vms {
                vms.add([vm.name, vm.protected ? "yes" : "no", vm.priority.rawValue, vm.monitoring ? "yes" : "no",
                         vm.desiredRunning ? "running" : "off", vm.runningOn ?? "-"])
            }
            print(vms.render())
            for failover in status.failovers {
                print("failover of \(failover.failedHost): failed \(failover.failedAt), detected \(failover.detectedAt)"
                      + (failover.recoveredAt.map { ", recovered \($0)" } ?? ""))
                for restart in failover.restarts {
                    print("  \(restart.name) on \(restart.host): powered on \(restart.poweredOnAt)"
                          + (restart.firstInstructionAt.map { ", first instruction \($0)" } ?? ""))
                }
            }
        }
    }
}

struct HAConfigure: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "configure", abstract: "Create or change the HA cluster of this host's volumes.")
    @OptionGroup var agent: AgentOptions
    @Option(help: "The cluster's name.") var cluster: String
    @Option(help: "A member host (its identity); repeat for each.") var member: [String]
    @Option(name: .customLong("failures-to-tolerate"), help: "Host failures whose VMs must still fit (admission control).") var failures = 1
    @Option(name: .customLong("isolation-response"), help: "powerOff or leaveRunning.") var isolation = "powerOff"
    @Option(name: .customLong("monitoring-timeout"), help: "Seconds of guest silence before a monitored VM is reset.") var monitoringTimeout = 30
    @Option(name: .customLong("max-resets-per-hour"), help: "Monitoring resets of one VM per hour at most.") var maxResets = 3

    func run() async throws {
        guard let response = Components.Schemas.HASettings.IsolationResponsePayload(rawValue: isolation) else {
            throw ValidationError("--isolation-response must be powerOff or leaveRunning")
        }
        try await withAgent(try agent.endpoint()) { client in
            let status = try await client.configureHA(body: .json(.init(
                cluster: cluster, members: member,
                settings: .init(failuresToTolerate: failures, isolationResponse: response, monitoringTimeoutSeconds: monitoringTimeout,
                                maxResetsPerHour: maxResets)))).ok.body.json
            print("HA cluster '\(status.cluster ?? cluster)' configured (generation \(status.generation ?? 0))")
        }
    }
}

struct HAProtect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "protect", abstract: "Set a VM's HA protection, restart priority and monitoring.")
    @OptionGroup var agent: AgentOptions
    @Option(help: "high, medium or low.") var priority = "medium"
    @Flag(help: "Reset the VM when its guest's heartbeat stops.") var monitoring = false
    @Flag(name: .customLong("off"), help: "Remove the protection.") var off = false
    @Argument(help: "The VM's name or UUID.") var vm: String

    func run() async throws {
        guard let chosen = Components.Schemas.VMHASettings.PriorityPayload(rawValue: priority) else {
            throw ValidationError("--priority must be high, medium or low")
        }
        try await withAgent(try agent.endpoint()) { client in
            let entry = try await client.setVMHA(path: .init(vm: vm), body: .json(.init(protected: !off, priority: chosen, monitoring: monitoring))).ok.body.json
            print("VM '\(entry.name)': \(entry.protected ? "protected, priority \(entry.priority.rawValue)" : "not protected")"
                  + (entry.monitoring ? ", monitored" : ""))
        }
    }
}

struct Maintenance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Enter or leave maintenance mode (enter hands this host's VMs to the other members).")
    @OptionGroup var agent: AgentOptions
    @Argument(help: "enter or exit.") var action: String

    func run() async throws {
        try await withAgent(try agent.endpoint()) { client in
            switch action {
            case "enter":
                let task = try await client.enterMaintenance().accepted.body.json
                let done = try await wait(for: task, client: client, what: "entering maintenance mode")
                print("in maintenance mode: \(done.result ?? "")")
            case "exit":
                _ = try await client.exitMaintenance().noContent
                print("left maintenance mode")
            default:
                throw ValidationError("say enter or exit")
            }
        }
    }
}
