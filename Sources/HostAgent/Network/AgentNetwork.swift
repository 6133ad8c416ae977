public import HostNetworking
internal import SystemSupport
internal import Synchronization
internal import FoundationEssentials

/// The agent's view of this host's virtual network: the switches and port groups of `hostd.toml`
/// (fixed while the agent runs) plus those made through the API (kept in `STATE/network.json`),
/// realized by a ``HostNetwork``.
public final class AgentNetwork: Sendable {
    public let host: HostNetwork
    /// What `hostd.toml` defines (cannot be changed through the API).
    public let fixed: NetworkConfiguration
    private let statePath: String
    private let added: Mutex<NetworkConfiguration>
    private let changes = Mutex(())

    /// Reads the API-made part from `stateDirectory/network.json`.
    ///
    /// - Throws: ``AgentError`` when that file exists but cannot be read.
    public init(configuration: NetworkConfiguration, stateDirectory: String, host: HostNetwork = HostNetwork()) throws(AgentError) {
        self.host = host
        fixed = configuration
        statePath = "\(stateDirectory)/network.json"
        var stored = NetworkConfiguration()
        if let data = FileManager.default.contents(atPath: statePath) {
            do { stored = try JSONDecoder().decode(NetworkConfiguration.self, from: data) } catch {
                throw AgentError(.failed, "\(statePath) is not a valid network configuration: \(error)")
            }
        }
        added = Mutex(stored)
    }

    /// Everything configured: `hostd.toml`'s entries, then the API's.
    public var configuration: NetworkConfiguration {
        let extra = added.withLock { $0 }
        return NetworkConfiguration(virtualSwitches: fixed.virtualSwitches + extra.virtualSwitches,
                                    portGroups: fixed.portGroups + extra.portGroups)
    }

    /// True when `hostd.toml` defines the switch or port group (it is changed there, not through the API).
    public func isFixed(switch name: String) -> Bool { fixed.virtualSwitch(named: name) != nil }
    public func isFixed(portGroup name: String) -> Bool { fixed.portGroup(named: name) != nil }

    /// Realizes the configuration (at start).
    public func start() throws(AgentError) {
        do { try host.apply(configuration) } catch { throw Self.agentError(error) }
    }

    // MARK: Changes through the API

    public func addSwitch(_ entry: VirtualSwitch) throws(AgentError) {
        try change { (extra) throws(AgentError) in
            guard configuration.virtualSwitch(named: entry.name) == nil else {
                throw AgentError(.alreadyExists, "virtual switch '\(entry.name)' exists already", field: "name")
            }
            extra.virtualSwitches.append(entry)
        }
    }

    public func removeSwitch(named name: String) throws(AgentError) {
        try change { (extra) throws(AgentError) in
            guard configuration.virtualSwitch(named: name) != nil else { throw AgentError(.notFound, "no virtual switch '\(name)'", field: "vswitch") }
            guard !isFixed(switch: name) else { throw Self.fixedError("virtual switch", name) }
            let groups = configuration.portGroups.filter { $0.virtualSwitch == name }.map { "'\($0.name)'" }
            guard groups.isEmpty else {
                throw AgentError(.invalidState, "virtual switch '\(name)' still has port groups \(groups.joined(separator: ", ")); remove them first")
            }
            extra.virtualSwitches.removeAll { $0.name == name }
        }
    }

    public func addPortGroup(_ group: PortGroup) throws(AgentError) {
        try change { (extra) throws(AgentError) in
            guard configuration.portGroup(named: group.name) == nil else {
                throw AgentError(.alreadyExists, "port group '\(group.name)' exists already", field: "name")
            }
            extra.portGroups.append(group)
        }
    }

    /// Changes a port group. Its policies and shaping change live on connected ports; its switch
    /// and VLAN cannot change while VMs are connected to it.
    public func updatePortGroup(_ group: PortGroup) throws(AgentError) {
        try change { (extra) throws(AgentError) in
            guard let current = configuration.portGroup(named: group.name) else {
                throw AgentError(.notFound, "no port group '\(group.name)'", field: "portgroup")
            }
            guard !isFixed(portGroup: group.name) else { throw Self.fixedError("port group", group.name) }
            if current.virtualSwitch != group.virtualSwitch || current.vlan != group.vlan {
                try requireUnused(group.name, "its virtual switch or VLAN cannot change")
            }
            extra.portGroups = extra.portGroups.map { $0.name == group.name ? group : $0 }
        }
    }

    public func removePortGroup(named name: String) throws(AgentError) {
        try change { (extra) throws(AgentError) in
            guard configuration.portGroup(named: name) != nil else { throw AgentError(.notFound, "no port group '\(name)'", field: "portgroup") }
            guard !isFixed(portGroup: name) else { throw Self.fixedError("port group", name) }
            try requireUnused(name, "it cannot be removed")
            extra.portGroups.removeAll { $0.name == name }
        }
    }

    private func requireUnused(_ portGroup: String, _ consequence: String) throws(AgentError) {
        let users = Set(host.ports.filter { $0.portGroup == portGroup }.map(\.vm))
        guard users.isEmpty else {
            throw AgentError(.invalidState, "port group '\(portGroup)' has ports of running VMs (\(users.sorted().joined(separator: ", "))); \(consequence)")
        }
    }

    /// Applies a change of the API-made part, keeps it only when the host took it, and saves it.
    private func change(_ body: (inout NetworkConfiguration) throws(AgentError) -> Void) throws(AgentError) {
        try changes.withLock { (_) throws(AgentError) in
            var extra = added.withLock { $0 }
            let before = extra
            try body(&extra)
            let merged = NetworkConfiguration(virtualSwitches: fixed.virtualSwitches + extra.virtualSwitches,
                                              portGroups: fixed.portGroups + extra.portGroups)
            do throws(NetworkError) { try host.apply(merged) } catch {
                _ = try? host.apply(NetworkConfiguration(virtualSwitches: fixed.virtualSwitches + before.virtualSwitches,
                                                         portGroups: fixed.portGroups + before.portGroups))
                throw Self.agentError(error)
            }
            added.withLock { $0 = extra }
            let data: Data
            do { data = try JSONEncoder().encode(extra) } catch { throw AgentError(.failed, "cannot encode the network configuration: \(error)") }
            do throws(AgentError) { try AtomicFile.write(data, to: statePath) } catch {
                throw AgentError(.failed, "the network changed but was not saved: \(error.message)")
            }
        }
    }

    // MARK: Checks

    /// Port groups among `names` that this host does not have.
    public func missingPortGroups(_ names: [String]) -> [String] { host.missingPortGroups(names) }

    /// Refuses (409, naming them) when this host lacks any of `names`: what a migration or an HA
    /// restart checks on the destination before anything moves.
    public func requirePortGroups(_ names: [String]) throws(AgentError) {
        let missing = missingPortGroups(names)
        guard missing.isEmpty else {
            throw AgentError(.invalidState, "this host has no port group \(missing.map { "'\($0)'" }.joined(separator: ", ")); "
                             + "a VM connected to it cannot run here", field: "portGroups")
        }
    }

    static func fixedError(_ what: String, _ name: String) -> AgentError {
        AgentError(.forbidden, "\(what) '\(name)' is defined in hostd.toml; change it there")
    }

    static func agentError(_ error: NetworkError) -> AgentError {
        let code: AgentError.Code = switch error.code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .alreadyExists, .nameClash: .alreadyExists
        case .inUse: .invalidState
        case .permissionDenied: .forbidden
        case .unavailable, .failed: .failed
        }
        return AgentError(code, error.description)
    }
}
