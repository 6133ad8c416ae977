import Foundation
import HostAgent
import HostAgentAPI
import OpenAPIRuntime
import VMFSCore

extension APIHandler {
    static let version = "vmhostd 1.0"

    func getHost(_ input: Operations.GetHost.Input) async throws -> Operations.GetHost.Output {
        let info = try await blocking { [agent] in
            let statistics = agent.hostStatistics
            let volumes = agent.datastores.map { Conversions.volume(agent.volumeView($0), mounts: agent.mountPoints(of: $0.name)) }
            return Components.Schemas.HostInfo(
                name: agent.context.settings.host.name, uuid: "\(agent.context.settings.host.uuid)", version: Self.version,
                apiVersion: "1.0.0", startedAt: Date(wallNanoseconds: agent.startedWall), cpuCount: statistics.cpuCount,
                memoryBytes: Int64(clamping: statistics.memoryTotalBytes), volumes: volumes, vmCount: statistics.vmsRegistered,
                runningVMCount: statistics.vmsRunning)
        }
        return .ok(.init(body: .json(info)))
    }

    func getHostStatistics(_ input: Operations.GetHostStatistics.Input) async throws -> Operations.GetHostStatistics.Output {
        let statistics = try await blocking { [agent] in agent.hostStatistics }
        return .ok(.init(body: .json(.init(
            cpuCount: statistics.cpuCount, cpuBusySeconds: statistics.cpuBusySeconds, cpuTotalSeconds: statistics.cpuTotalSeconds,
            loadAverage: statistics.loadAverage, memoryTotalBytes: Int64(clamping: statistics.memoryTotalBytes),
            memoryAvailableBytes: Int64(clamping: statistics.memoryAvailableBytes),
            agentResidentBytes: Int64(clamping: statistics.agentResidentBytes), agentCPUSeconds: statistics.agentCPUSeconds,
            vmsRegistered: statistics.vmsRegistered, vmsRunning: statistics.vmsRunning, uptimeSeconds: statistics.uptimeSeconds))))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        let text = try await blocking { [agent, metrics] in metrics.render(agent) }
        return .ok(.init(body: .plainText(HTTPBody(text))))
    }

    // MARK: Volumes

    func listVolumes(_ input: Operations.ListVolumes.Input) async throws -> Operations.ListVolumes.Output {
        let volumes = try await blocking { [agent] in
            agent.datastores.map { Conversions.volume(agent.volumeView($0), mounts: agent.mountPoints(of: $0.name)) }
        }
        return .ok(.init(body: .json(volumes)))
    }

    func getVolume(_ input: Operations.GetVolume.Input) async throws -> Operations.GetVolume.Output {
        let name = input.path.volume
        let volume = try await blocking { [agent] () throws(AgentError) in
            Conversions.volume(agent.volumeView(try agent.datastore(named: name)), mounts: agent.mountPoints(of: name))
        }
        return .ok(.init(body: .json(volume)))
    }

    func listVolumeHosts(_ input: Operations.ListVolumeHosts.Input) async throws -> Operations.ListVolumeHosts.Output {
        let name = input.path.volume
        let hosts = try await blocking { [agent] () throws(AgentError) in try agent.volumeHosts(name) }
        let slot = try? await blocking { [agent] () throws(AgentError) in try agent.datastore(named: name).volume().membership?.slot }
        return .ok(.init(body: .json(hosts.map { host in
            Components.Schemas.VolumeHost(
                slot: host.slot, host: host.host, name: host.hostName, state: host.state, liveness: host.liveness,
                generation: Int64(clamping: host.generation), isThisHost: slot.flatMap { $0 }.map { $0 == host.slot },
                description: host.msSinceChange.map { "last change \($0) ms ago" })
        })))
    }

    func listVolumeLocks(_ input: Operations.ListVolumeLocks.Input) async throws -> Operations.ListVolumeLocks.Output {
        let name = input.path.volume
        let locks = try await blocking { [agent] () throws(AgentError) in try agent.volumeLocks(name) }
        return .ok(.init(body: .json(locks.map { lock in
            Components.Schemas.LockInfo(
                index: lock.index, object: lock.object, mode: lock.mode, releaseRequested: lock.releaseRequested,
                holders: lock.holders.map { .init(host: $0.host, hostName: $0.hostName, slot: $0.slot, since: $0.since, status: $0.status) })
        })))
    }

    func recoverVolumeHosts(_ input: Operations.RecoverVolumeHosts.Input) async throws -> Operations.RecoverVolumeHosts.Output {
        let name = input.path.volume
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let slot = try Validation.within(request.slot, 0...4095, field: "slot")
        let wait = try Validation.within(request.waitMilliseconds, 0...600_000, field: "waitMilliseconds") ?? 0
        let recovered = try await blocking { [agent] () throws(AgentError) in
            try agent.recover(name, slot: slot, force: request.force ?? false, waitMilliseconds: UInt64(wait))
        }
        return .ok(.init(body: .json(.init(recovered: recovered))))
    }

    func breakVolumeLock(_ input: Operations.BreakVolumeLock.Input) async throws -> Operations.BreakVolumeLock.Output {
        let name = input.path.volume
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let index = try Validation.within(request.index, 0...Int(Int32.max), field: "index")
        let message = try await blocking { [agent] () throws(AgentError) in
            try agent.breakLock(name, file: request.file, index: index, force: request.force ?? false)
        }
        return .ok(.init(body: .json(.init(message: message))))
    }
}
