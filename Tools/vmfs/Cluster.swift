import ArgumentParser
import FoundationEssentials
import Glibc
import VMFSCore
import VMFSToolSupport
import HostAgentAPI
import HostAgentClient

struct Hosts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show heartbeat slots: hosts, liveness and the age of their last heartbeat.",
        discussion: "Liveness is judged by watching each slot change on this machine's clock (--observe-ms, default 1.5 × the longest renew interval).")

    @Option(name: .customLong("observe-ms"), help: "How long to watch the slots.") var observeMs: UInt64?
    @Flag(help: "Also show free slots that hosts used before.") var all = false
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "Block device or image file.") var device: String

    func run() throws {
        do {
            let inspector = try VolumeInspector(path: device)
            let quick = try inspector.hosts(observeMilliseconds: 0)
            let longestRenew = quick.filter { $0.state != "free" }.map { UInt64($0.renewIntervalMs) }.max() ?? 0
            let hosts = try inspector.hosts(observeMilliseconds: observeMs ?? (longestRenew * 3 / 2)).filter { all || $0.state != "free" }
            if json { ToolOutput.json(hosts); return }
            let fencing = hosts.contains { $0.fencingKey != nil }
            var columns = ["SLOT", "STATE", "LIVENESS", "GEN", "MS SINCE CHANGE", "HOST", "NAME", "PID", "LAST RENEWAL (OWNER'S CLOCK)"]
            if fencing { columns.append("PR KEY") }
            var table = TextTable(header: columns)
            for host in hosts {
                var row = ["\(host.slot)", host.state, host.liveness, "\(host.generation)", host.msSinceChange.map(String.init) ?? "-",
                           host.host, host.hostName.escapingControlCharacters, "\(host.pid)", host.lastRenewal]
                if fencing {
                    let status = host.registered.map { $0 ? "registered" : "not registered" } ?? "unknown"
                    row.append(host.fencingKey.map { "\($0) (\(status))" } ?? "-")
                }
                table.add(row)
            }
            print(table.render())
        } catch {
            throw ToolOutput.failure("vmfs hosts", error)
        }
    }
}

struct Locks: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show held locks: object, mode, holders, version.")

    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "Block device or image file.") var device: String

    func run() throws {
        do {
            let locks = try VolumeInspector(path: device).locks()
            if json { ToolOutput.json(locks); return }
            var table = TextTable(header: ["LOCK", "OBJECT", "MODE", "VERSION", "HOLDERS"])
            for lock in locks {
                let holders = lock.holders.map { "\($0.host) (\($0.hostName), slot \($0.slot), gen \($0.generation), since \($0.since), \($0.status))" }
                table.add(["\(lock.index)", lock.object.escapingControlCharacters, lock.mode, "\(lock.version)",
                           holders.joined(separator: "; ").escapingControlCharacters])
            }
            print(table.render())
        } catch {
            throw ToolOutput.failure("vmfs locks", error)
        }
    }
}

struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recover hosts that died holding the volume: replay their journals, free their locks and slots.",
        discussion: "Waits until a silent host has been silent for its dead interval. --slot with --force recovers one slot at once (only when its host is known to be down).")

    @OptionGroup var host: HostIdentityOptions
    @Option(help: "Recover only this heartbeat slot.") var slot: Int?
    @Flag(help: "Do not wait for the dead interval (the host is known to be down).") var force = false
    @Option(name: .customLong("wait-ms"), help: "Longest time to wait for silent hosts to count as dead.") var waitMs: UInt64?
    @Argument(help: "Block device or image file.") var device: String

    func run() async throws {
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs recover", { client, datastore in
            let wait = Int(min(waitMs ?? 60_000, 600_000))
            let result = try await client.recoverVolumeHosts(path: .init(volume: datastore),
                                                             body: .json(.init(slot: slot, force: force, waitMilliseconds: wait))).ok.body.json
            if result.recovered.isEmpty { print("no dead host to recover") }
            for slot in result.recovered { print("recovered slot \(slot) through the host agent") }
        }) { return }
        try recoverHere()
    }

    private func recoverHere() throws {
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            var recovered: [Int] = []
            if let slot {
                if try volume.recover(slot: slot, force: force) { recovered.append(slot) }
                if !force && recovered.isEmpty {
                    let wait = UInt64((volume.timing?.deadIntervalMs ?? 16000) + (volume.timing?.renewIntervalMs ?? 3000))
                    let deadline = Date().addingTimeInterval(Double(waitMs ?? wait) / 1000)
                    while recovered.isEmpty && Date() < deadline {
                        usleep(50_000)
                        if try volume.recover(slot: slot) { recovered.append(slot) }
                    }
                }
            } else {
                let wait = waitMs ?? UInt64(volume.header.deadIntervalMs + volume.header.heartbeatIntervalMs) * 2
                recovered = try volume.recoverDeadHosts(waitMilliseconds: wait)
            }
            for report in volume.recoveries {
                print("recovered slot \(report.slot) (host \(report.owner)): \(report.transactions) journal transaction(s) replayed "
                      + "in \(report.nanoseconds / 1_000_000) ms")
            }
            if recovered.isEmpty { print("no dead host to recover") }
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs recover", error)
        }
    }
}

struct BreakLock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break-lock",
        abstract: "Free a lock whose holder is gone.",
        discussion: "Holders whose heartbeat generation moved on are dropped; a dead holder is recovered first (journal replay). A live holder is only removed with --force, which risks corruption if that host still writes.")

    @OptionGroup var host: HostIdentityOptions
    @Flag(help: "Remove holders even if they look alive.") var force = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "A file name, or a lock index as shown by `vmfs locks`.") var target: String

    func run() async throws {
        if try await AgentRouting.run(device: device, host: host, tool: "vmfs break-lock", { client, datastore in
            let request: Components.Schemas.BreakLockRequest = if let number = Int(target) {
                .init(index: number, force: force)
            } else {
                .init(file: target, force: force)
            }
            let message = try await client.breakVolumeLock(path: .init(volume: datastore), body: .json(request)).ok.body.json.message
            print(message.escapingControlCharacters)
        }) { return }
        do {
            let index: Int
            if let number = Int(target) { index = number } else { index = try VolumeInspector(path: device).lockIndex(ofFile: target) }
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            print(try volume.breakLock(index, force: force).escapingControlCharacters)
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs break-lock", error)
        }
    }
}
