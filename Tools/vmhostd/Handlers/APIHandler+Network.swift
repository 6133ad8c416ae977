import Foundation
import HostAgent
import HostAgentAPI
import HostNetworking
import OpenAPIRuntime

/// Virtual switches, port groups, VM NICs (docs/NETWORKING.md).
extension APIHandler {
    func listVirtualSwitches(_ input: Operations.ListVirtualSwitches.Input) async throws -> Operations.ListVirtualSwitches.Output {
        let switches = try await blocking { [agent] in agent.network.configuration.virtualSwitches.map { NetworkConversions.info($0, agent.network) } }
        return .ok(.init(body: .json(switches)))
    }

    func createVirtualSwitch(_ input: Operations.CreateVirtualSwitch.Input) async throws -> Operations.CreateVirtualSwitch.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let entry = try NetworkConversions.virtualSwitch(body)
        let info = try await blocking { [agent] () throws(AgentError) in
            try agent.network.addSwitch(entry)
            return NetworkConversions.info(entry, agent.network)
        }
        return .created(.init(body: .json(info)))
    }

    func getVirtualSwitch(_ input: Operations.GetVirtualSwitch.Input) async throws -> Operations.GetVirtualSwitch.Output {
        let name = input.path.vswitch
        let info = try await blocking { [agent] () throws(AgentError) in
            guard let entry = agent.network.configuration.virtualSwitch(named: name) else {
                throw AgentError(.notFound, "no virtual switch '\(name)'", field: "vswitch")
            }
            return NetworkConversions.info(entry, agent.network)
        }
        return .ok(.init(body: .json(info)))
    }

    func deleteVirtualSwitch(_ input: Operations.DeleteVirtualSwitch.Input) async throws -> Operations.DeleteVirtualSwitch.Output {
        let name = input.path.vswitch
        try await blocking { [agent] () throws(AgentError) in try agent.network.removeSwitch(named: name) }
        return .noContent(.init())
    }

    func listPortGroups(_ input: Operations.ListPortGroups.Input) async throws -> Operations.ListPortGroups.Output {
        let groups = try await blocking { [agent] in agent.network.configuration.portGroups.map { NetworkConversions.info($0, agent.network) } }
        return .ok(.init(body: .json(groups)))
    }

    func createPortGroup(_ input: Operations.CreatePortGroup.Input) async throws -> Operations.CreatePortGroup.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let group = try NetworkConversions.portGroup(body)
        let info = try await blocking { [agent] () throws(AgentError) in
            guard agent.network.configuration.virtualSwitch(named: group.virtualSwitch) != nil else {
                throw AgentError(.notFound, "no virtual switch '\(group.virtualSwitch)'", field: "vswitch")
            }
            try agent.network.addPortGroup(group)
            return NetworkConversions.info(group, agent.network)
        }
        return .created(.init(body: .json(info)))
    }

    func getPortGroup(_ input: Operations.GetPortGroup.Input) async throws -> Operations.GetPortGroup.Output {
        let name = input.path.portgroup
        let info = try await blocking { [agent] () throws(AgentError) in
            guard let group = agent.network.configuration.portGroup(named: name) else {
                throw AgentError(.notFound, "no port group '\(name)'", field: "portgroup")
            }
            return NetworkConversions.info(group, agent.network)
        }
        return .ok(.init(body: .json(info)))
    }

    func updatePortGroup(_ input: Operations.UpdatePortGroup.Input) async throws -> Operations.UpdatePortGroup.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        let name = input.path.portgroup
        guard body.name == name else {
            throw AgentError(.invalidArgument, "the body names port group '\(body.name)', the path '\(name)'; a port group cannot be renamed", field: "name")
        }
        let group = try NetworkConversions.portGroup(body)
        let info = try await blocking { [agent] () throws(AgentError) in
            guard agent.network.configuration.virtualSwitch(named: group.virtualSwitch) != nil else {
                throw AgentError(.notFound, "no virtual switch '\(group.virtualSwitch)'", field: "vswitch")
            }
            try agent.network.updatePortGroup(group)
            return NetworkConversions.info(group, agent.network)
        }
        return .ok(.init(body: .json(info)))
    }

    func deletePortGroup(_ input: Operations.DeletePortGroup.Input) async throws -> Operations.DeletePortGroup.Output {
        let name = input.path.portgroup
        try await blocking { [agent] () throws(AgentError) in try agent.network.removePortGroup(named: name) }
        return .noContent(.init())
    }

    func checkNetwork(_ input: Operations.CheckNetwork.Input) async throws -> Operations.CheckNetwork.Output {
        guard case .json(let body) = input.body else { throw AgentError(.invalidArgument, "expected a JSON body") }
        guard body.portGroups.count <= 64 else {
            throw AgentError(.invalidArgument, "\(body.portGroups.count) port groups; at most 64 per check", field: "portGroups")
        }
        let missing = try await blocking { [agent] in agent.network.missingPortGroups(body.portGroups) }
        return .ok(.init(body: .json(.init(missing: missing))))
    }

    func listVMNICs(_ input: Operations.ListVMNICs.Input) async throws -> Operations.ListVMNICs.Output {
        let reference = input.path.vm
        let nics = try await blocking { [agent] () throws(AgentError) in try agent.lookup(reference).nics() }
        return .ok(.init(body: .json(nics.map(NetworkConversions.nic))))
    }

    func announceVMNetwork(_ input: Operations.AnnounceVMNetwork.Input) async throws -> Operations.AnnounceVMNetwork.Output {
        let reference = input.path.vm
        try await blocking { [agent] () throws(AgentError) in try agent.announceNetwork(of: reference) }
        return .noContent(.init())
    }
}
