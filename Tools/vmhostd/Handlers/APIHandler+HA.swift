import Foundation
import HostAgent
import HostAgentAPI
import OpenAPIRuntime

extension APIHandler {
    func getHA(_ input: Operations.GetHA.Input) async throws -> Operations.GetHA.Output {
        let status = try await blocking { [agent] in agent.haStatus }
        return .ok(.init(body: .json(Self.convert(status))))
    }

    func configureHA(_ input: Operations.ConfigureHA.Input) async throws -> Operations.ConfigureHA.Output {
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        var settings = HAConfiguration.Settings()
        if let given = request.settings {
            if let value = given.failuresToTolerate { settings.failuresToTolerate = value }
            if let value = given.isolationResponse { settings.isolationResponse = value == .powerOff ? .powerOff : .leaveRunning }
            if let value = given.monitoringTimeoutSeconds { settings.monitoringTimeoutSeconds = value }
            if let value = given.maxResetsPerHour { settings.maxResetsPerHour = value }
        }
        let status = try await blocking { [agent, settings] () throws(AgentError) in
            _ = try agent.configureHA(cluster: request.cluster, members: request.members, settings: settings)
            return agent.haStatus
        }
        return .ok(.init(body: .json(Self.convert(status))))
    }

    func setVMHA(_ input: Operations.SetVMHA.Input) async throws -> Operations.SetVMHA.Output {
        let reference = input.path.vm
        guard case .json(let request) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let priority: HAConfiguration.Priority = switch request.priority {
        case .high?: .high
        case .low?: .low
        case .medium?, nil: .medium
        }
        let (uuid, settings) = try await blocking { [agent] () throws(AgentError) in
            let vm = try agent.lookup(reference)
            return (vm.uuid, try agent.setHA(reference, protected: request.protected, priority: priority, monitoring: request.monitoring ?? false))
        }
        return .ok(.init(body: .json(Self.convert(uuid, settings, runningOn: nil))))
    }

    func enterMaintenance(_ input: Operations.EnterMaintenance.Input) async throws -> Operations.EnterMaintenance.Output {
        let task = try await blocking { [agent] () throws(AgentError) in try agent.enterMaintenance() }
        return .accepted(.init(body: .json(Conversions.task(task))))
    }

    func exitMaintenance(_ input: Operations.ExitMaintenance.Input) async throws -> Operations.ExitMaintenance.Output {
        try await blocking { [agent] in agent.exitMaintenance() }
        return .noContent(.init())
    }

    static func convert(_ uuid: String, _ vm: HAConfiguration.VMSettings, runningOn: String?) -> Components.Schemas.HAProtectedVM {
        Components.Schemas.HAProtectedVM(
            id: uuid, name: vm.name, volume: vm.datastore, protected: vm.protected, priority: .init(rawValue: vm.priority.rawValue) ?? .medium,
            monitoring: vm.monitoring, desiredRunning: vm.desiredRunning, evacuatingFrom: vm.evacuatingFrom,
            memoryBytes: Int64(clamping: vm.memoryBytes), runningOn: runningOn)
    }

    static func convert(_ status: HAStatusView) -> Components.Schemas.HAStatus {
        let configuration = status.configuration
        return Components.Schemas.HAStatus(
            configured: configuration != nil, cluster: configuration?.cluster, generation: configuration.map { Int64(clamping: $0.generation) },
            settings: configuration.map { .init(failuresToTolerate: $0.settings.failuresToTolerate,
                                                isolationResponse: $0.settings.isolationResponse == .powerOff ? .powerOff : .leaveRunning,
                                                monitoringTimeoutSeconds: $0.settings.monitoringTimeoutSeconds,
                                                maxResetsPerHour: $0.settings.maxResetsPerHour) },
            members: status.members.map { .init(name: $0.name, liveness: $0.liveness, maintenance: $0.maintenance,
                                                capacityMemoryBytes: $0.capacityMemoryBytes.map { Int64(clamping: $0) },
                                                usedMemoryBytes: $0.usedMemoryBytes.map { Int64(clamping: $0) }, running: $0.running) },
            vms: status.vms.map { convert($0.uuid, $0.settings, runningOn: $0.runningOn) },
            failoverAvailableBytes: Int64(clamping: status.failoverAvailableBytes), failoverRequiredBytes: Int64(clamping: status.failoverRequiredBytes),
            failoverCapacityOK: status.failoverCapacityOK,
            failovers: (configuration?.failovers ?? []).map { failover in
                .init(failedHost: failover.failedHost, failedAt: Date(wallNanoseconds: failover.failed), detectedAt: Date(wallNanoseconds: failover.detected),
                      recoveredAt: failover.recovered.map(Date.init(wallNanoseconds:)),
                      restarts: failover.restarts.map { .init(vm: $0.vm, name: $0.name, host: $0.host, poweredOnAt: Date(wallNanoseconds: $0.poweredOn),
                                                              firstInstructionAt: $0.firstInstruction.map(Date.init(wallNanoseconds:))) })
            })
    }
}
