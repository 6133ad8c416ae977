import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import Hypervisor
import Synchronization
import VMFSCore
import OpenAPIRuntime
import VMFSToolSupport
import VMManagement
import HostAgentAPI
import HostAgentClient

/// Where a command works: on a volume itself (no agent holds it), or through a host agent.
enum Target {
    case volume(String)
    /// The agent, and the datastore when known.
    case agent(AgentEndpoint, datastore: String?)
}

/// Options naming the volume (or the agent) and this host.
struct VolumeOptions: ParsableArguments {
    @Option(help: "The VMFS volume (block device or image file). When this host's agent holds it, the command goes through the agent; without it, the agent's volumes are used.")
    var volume: String?
    @Option(help: "The volume's name on the host agent (found automatically from --volume).") var datastore: String?
    @OptionGroup var agent: AgentOptions

    var host: HostIdentityOptions { agent.host }

    func target() throws -> Target {
        if let volume, agent.agent == nil {
            if let route = AgentRoute.forVolume(device: volume, host: agent.identity) { return .agent(route.endpoint, datastore: route.datastore) }
            return .volume(volume)
        }
        return .agent(try agent.endpoint(), datastore: datastore)
    }

    func mount(_ path: String) throws -> Volume {
        do { return try Volume.mount(path: path, options: host.mountOptions()) } catch { throw fail(error) }
    }
}

/// Prints the error and returns the exit code to throw (so `defer`s still unmount the volume).
func fail(_ error: any Error) -> ExitCode {
    ToolOutput.failure("vmctl", error)
}

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a VM's files on the volume.")

    @OptionGroup var target: VolumeOptions
    @Option var name: String
    @Option var vcpus = 1
    @Option(help: "Guest memory, e.g. 256M (a multiple of 2 MiB).") var memory = "128M"
    @Option(help: "Size of a virtual disk, e.g. 8G; repeat for more disks.") var disk: [String] = []
    @Flag(help: "Preallocate the disks (lazily zeroed thick) instead of thin.") var thick = false
    @Option(help: "Linux kernel (bzImage or vmlinux) to boot; copied onto the volume.") var kernel: String?
    @Option(help: "initramfs for the Linux kernel.") var initrd: String?
    @Option(help: "Kernel command line.") var cmdline: String = LinuxBootConfiguration.defaultCommandLine
    @Option(help: "Test guest image (Tools/guest, built by Tools/scripts/build-guest.sh) to boot instead of Linux.") var guest: String?
    @Option(help: "Test guest workload: \(TestGuestWorkload.allCases.map { "\($0)" }.joined(separator: ", ")).") var workload = "hello"
    @Option(help: "Comma-separated workload arguments.") var args = ""
    @Option(name: .customLong("log-limit"), help: "Size the console log NAME.log may reach (64K–1G); then its older half is dropped.")
    var logLimit = "8M"
    @Option(name: .customLong("network"), help: "A NIC on this port group (its MAC address is generated once, now); repeat for more NICs.")
    var networks: [String] = []

    func run() async throws {
        guard let memoryBytes = parseSize(memory) else { throw ValidationError("--memory '\(memory)' is not a size") }
        guard let logBytes = parseSize(logLimit) else { throw ValidationError("--log-limit '\(logLimit)' is not a size") }
        var sizes: [UInt64] = []
        for text in disk {
            guard let size = parseSize(text) else { throw ValidationError("--disk '\(text)' is not a size") }
            sizes.append(size)
        }
        let boot: VirtualMachineStore.BootImages
        switch (kernel, guest) {
        case (let kernel?, nil):
            boot = .linux(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline)
        case (nil, let guest?):
            guard let chosen = TestGuestWorkload.allCases.first(where: { "\($0)" == workload }) else {
                throw ValidationError("unknown --workload '\(workload)'")
            }
            var arguments: [UInt64] = []
            for part in args.split(separator: ",") {
                guard let value = UInt64(part) else { throw ValidationError("--args has '\(part)', not a number") }
                arguments.append(value)
            }
            boot = .testGuest(imagePath: guest, workload: chosen, arguments: arguments)
        default:
            throw ValidationError("give exactly one of --kernel or --guest")
        }
        switch try target.target() {
        case .volume(let path):
            let volume = try target.mount(path)
            defer { try? volume.unmount() }
            do {
                let definition = try VirtualMachineStore(volume: volume).create(
                    .init(name: name, vcpuCount: vcpus, memoryBytes: memoryBytes, diskSizes: sizes, thick: thick, boot: boot,
                          logSizeLimit: logBytes, networks: networks))
                print("created VM '\(definition.name)': \(definition.vcpuCount) vCPU(s), \(formatSize(definition.memoryBytes)), "
                      + "disks \(definition.disks.joined(separator: ", "))")
                try volume.unmount()
            } catch { throw fail(error) }
        case .agent(let endpoint, let datastore):
            guard let datastore else { throw ValidationError("name the volume with --datastore (or --volume)") }
            try await createThroughAgent(endpoint, datastore: datastore, memoryBytes: memoryBytes, sizes: sizes, boot: boot)
        }
    }

    /// Uploads the boot images as NAME.guest / NAME.kernel / NAME.initrd, then has the agent create the VM.
    func createThroughAgent(_ endpoint: AgentEndpoint, datastore: String, memoryBytes: UInt64, sizes: [UInt64],
                            boot: VirtualMachineStore.BootImages) async throws {
        try await withAgent(endpoint) { client in
            let bootRequest: Components.Schemas.Boot
            switch boot {
            case .linux(let kernelPath, let initrdPath, let commandLine):
                try await upload(kernelPath, as: "\(name).kernel", datastore: datastore, client: client)
                if let initrdPath { try await upload(initrdPath, as: "\(name).initrd", datastore: datastore, client: client) }
                bootRequest = .init(_type: .linux, kernel: "\(name).kernel", initrd: initrdPath == nil ? nil : "\(name).initrd",
                                    commandLine: commandLine)
            case .testGuest(let imagePath, let workload, let arguments):
                try await upload(imagePath, as: "\(name).guest", datastore: datastore, client: client)
                bootRequest = .init(_type: .testGuest, image: "\(name).guest", workload: "\(workload)",
                                    arguments: arguments.map { Int64(bitPattern: $0) })
            }
            let task = try await client.createVM(body: .json(.init(
                volume: datastore, name: name, vcpus: vcpus, memoryBytes: Int64(clamping: memoryBytes),
                diskBytes: sizes.map { Int64(clamping: $0) }, thick: thick, boot: bootRequest, networks: networks))).accepted.body.json
            let done = try await wait(for: task, client: client, what: "creating VM '\(name)'")
            print("created VM '\(name)' (\(done.result ?? "")) on \(datastore) through the host agent: \(vcpus) vCPU(s), \(formatSize(memoryBytes))")
        }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a VM in this process until it powers off.",
        discussion: "Exit status: 0 when the guest powers off with status 0; 2 when it powers off with another status; 3 on a reset; 4 on a vCPU failure; 5 when --time-limit passed.")

    @OptionGroup var target: VolumeOptions
    @Option(name: .customLong("time-limit"), help: "Stop the VM after this many seconds.") var timeLimit: Double?
    @Flag(help: "Do not copy the console to standard output (the .log still gets it).") var quiet = false
    @Flag(help: ArgumentHelp("Print guest markers and VMM memory after the run (benchmarks).", visibility: .hidden)) var report = false
    @Option(name: .customLong("network-config"),
            help: "Without an agent: the virtual switches and port groups ([[vswitch]], [[portgroup]] tables) the VM's NICs use. Default: \(LocalNetwork.defaultConfiguration) when it exists.")
    var networkConfig: String?
    @Argument var name: String

    func run() async throws {
        switch try target.target() {
        case .volume(let path): try runHere(path)
        case .agent(let endpoint, _): try await runThroughAgent(endpoint)
        }
    }

    /// Powers the VM on through the agent and prints its console until it stops; the exit status
    /// follows the guest's power-off status as for a VM run here.
    func runThroughAgent(_ endpoint: AgentEndpoint) async throws {
        let status: Int64? = try await withAgent(endpoint) { client in
            let task = try await client.powerOnVM(path: .init(vm: name)).accepted.body.json
            _ = try await wait(for: task, client: client, what: "power-on of '\(name)'")
            let (quiet, name) = (quiet, name)
            let console = Task { [client] in
                guard !quiet, let body = try? await client.readConsole(path: .init(vm: name), query: .init(follow: true)).ok.body.binary else { return }
                do {
                    for try await chunk in body {
                        writeOut(chunk)
                    }
                } catch {}
            }
            let deadline = timeLimit.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
            while true {
                let detail = try await client.getVM(path: .init(vm: name)).ok.body.json
                let state = detail.summary.powerState
                if state == .poweredOff || state == .crashed || state == .lost {
                    try? await Task.sleep(for: .milliseconds(200))
                    console.cancel()
                    if state != .poweredOff {
                        ToolOutput.error("vmctl: VM '\(name)' \(state.rawValue): \(detail.summary.reason ?? "")".escapingControlCharacters)
                        throw ExitCode(4)
                    }
                    return detail.guestStatus
                }
                if let deadline, ContinuousClock.now >= deadline {
                    _ = try await client.powerOffVM(path: .init(vm: name)).accepted
                    console.cancel()
                    throw ExitCode(5)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        if let status, status != 0 {
            ToolOutput.error("vmctl: VM '\(name)' powered off with status \(status)")
            throw ExitCode(2)
        }
    }

    func runHere(_ path: String) throws {
        let volume = try target.mount(path)
        let reason: PowerOffReason
        // SIGINT/SIGTERM power the VM off cleanly, so its locks are released on the way out.
        let signals = SignalSources([SIGINT, SIGTERM])
        defer { signals.cancel() }
        let machineBox = MachineBox()
        let network = LocalNetwork(configurationPath: networkConfig)
        defer { network.close() }
        do {
            reason = try VirtualMachineStore(volume: volume).run(
                name, console: quiet ? nil : StandardOutputConsole(), timeLimit: timeLimit,
                started: { machine in
                    machineBox.machine = machine
                    signals.handle { machine.requestStop() }
                },
                networkInterfaces: { (definition) throws(VMError) in try network.connect(definition) })
        } catch {
            try? volume.unmount()
            throw fail(error)
        }
        if report, let machine = machineBox.machine {
            for marker in machine.guestMarkers {
                print("marker \(marker.code) vcpu \(marker.vcpu) monotonic_ns \(marker.monotonicNanoseconds) realtime_ns \(marker.realtimeNanoseconds)")
            }
            for field in ["VmRSS:", "RssAnon:", "RssFile:"] { print("vmm_\(field.dropLast().lowercased())_bytes \(statusField(field))") }
        }
        try? volume.unmount()
        switch reason {
        case .guestPoweredOff(let status) where status == 0: return
        case .guestPoweredOff(let status):
            ToolOutput.error("vmctl: VM '\(name)' powered off with status \(status)")
            throw ExitCode(2)
        case .reset: throw ExitCode(3)
        case .vcpuFailure(let vcpu, let description):
            ToolOutput.error("vmctl: VM '\(name)': vCPU \(vcpu) failed: \(description)")
            throw ExitCode(4)
        case .timedOut: throw ExitCode(5)
        case .stopRequested: return
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the VMs on the volume and whether they run.")

    @OptionGroup var target: VolumeOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        let path: String
        switch try target.target() {
        case .volume(let volume): path = volume
        case .agent(let endpoint, _):
            try await withAgent(endpoint) { client in
                let vms = try await client.listVMs().ok.body.json
                if json { return ToolOutput.json(vms) }
                var table = TextTable(header: Components.Schemas.VMSummary.header)
                for vm in vms { table.add(vm.row) }
                print(table.render())
            }
            return
        }
        let volume = try target.mount(path)
        defer { try? volume.unmount() }
        do {
            let machines = try VirtualMachineStore(volume: volume).list()
            if json {
                ToolOutput.json(machines)
            } else {
                var table = TextTable(header: ["NAME", "VCPUS", "MEMORY", "DISKS", "STATE", "HOST"])
                for vm in machines {
                    let usable = vm.problem == nil
                    table.add([vm.name.escapingControlCharacters, usable ? "\(vm.vcpuCount)" : "-", usable ? formatSize(vm.memoryBytes) : "-",
                               usable ? vm.diskBytes.map(formatSize).joined(separator: ",") : "-", vm.state,
                               vm.runningOn?.escapingControlCharacters ?? "-"])
                }
                print(table.render())
                for vm in machines { if let problem = vm.problem { ToolOutput.error("vmctl: VM '\(vm.name)' is invalid: \(problem)".escapingControlCharacters) } }
            }
            try volume.unmount()
        } catch { throw fail(error) }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a VM's configuration (.vmx).")

    @OptionGroup var target: VolumeOptions
    @Argument var name: String

    func run() async throws {
        let path: String
        switch try target.target() {
        case .volume(let volume): path = volume
        case .agent(let endpoint, _):
            try await withAgent(endpoint) { client in ToolOutput.json(try await client.getVM(path: .init(vm: name)).ok.body.json) }
            return
        }
        let volume = try target.mount(path)
        defer { try? volume.unmount() }
        do {
            let text = try VirtualMachineStore(volume: volume).definition(of: name).vmx.text
            print(text.split(separator: "\n", omittingEmptySubsequences: false).map(\.escapingControlCharacters).joined(separator: "\n"),
                  terminator: "")
            try volume.unmount()
        } catch { throw fail(error) }
    }
}

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a VM and its files (refused while it runs).")

    @OptionGroup var target: VolumeOptions
    @Argument var name: String

    func run() async throws {
        let path: String
        switch try target.target() {
        case .volume(let volume): path = volume
        case .agent(let endpoint, let datastore):
            try await withAgent(endpoint) { client in
                // The agent removes registered VMs; one not registered is registered first.
                if (try? await client.getVM(path: .init(vm: name)).ok) == nil, let datastore {
                    _ = try await client.registerVM(body: .json(.init(volume: datastore, name: name))).created
                }
                _ = try await client.unregisterVM(path: .init(vm: name), query: .init(deleteFiles: true)).noContent
            }
            return
        }
        let volume = try target.mount(path)
        defer { try? volume.unmount() }
        do {
            try VirtualMachineStore(volume: volume).remove(name)
            try volume.unmount()
        } catch { throw fail(error) }
    }
}

/// Turns SIGINT and SIGTERM into one action (stopping the VM), whenever they arrive.
///
/// The dispatch sources are resumed as soon as they exist: libdispatch traps (SIGILL) when a
/// source that was never resumed is released, which is what happened to every `vmctl run` that
/// failed before its VM started. A signal that arrives before the action is set is remembered,
/// and the action runs as soon as it is set.
final class SignalSources: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let action = PendingAction()

    init(_ numbers: [Int32]) {
        let action = self.action
        sources = numbers.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { action.trigger() }
            source.resume()
            return source
        }
    }

    /// Runs `handler` on every later signal, and now if a signal came already.
    func handle(_ handler: @escaping @Sendable () -> Void) { action.set(handler) }

    func cancel() { sources.forEach { $0.cancel() } }
}

/// An action that may be triggered before it is known: the trigger is then kept for it.
final class PendingAction: Sendable {
    private struct State {
        var action: (@Sendable () -> Void)?
        var triggered = false
    }

    private let state = Mutex(State())

    func trigger() {
        state.withLock { s -> (@Sendable () -> Void)? in
            if s.action == nil { s.triggered = true }
            return s.action
        }?()
    }

    func set(_ action: @escaping @Sendable () -> Void) {
        let triggered = state.withLock { s -> Bool in
            s.action = action
            return s.triggered
        }
        if triggered { action() }
    }
}

/// Holds the running machine for the report.
final class MachineBox: @unchecked Sendable {
    var machine: VirtualMachine?
}

/// A "kB" field of /proc/self/status, in bytes.
func statusField(_ name: String) -> UInt64 {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
          let kilobytes = UInt64(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kilobytes * 1024
}
