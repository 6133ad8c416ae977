public import HostNetworking
internal import SystemSupport

extension HostAgent {
    /// Realizes the configured virtual switches; a failure is an event, the agent runs on (its
    /// VMs without NICs do not need the network).
    func startNetwork() {
        let configuration = context.network.configuration
        guard !configuration.virtualSwitches.isEmpty || !configuration.portGroups.isEmpty else { return }
        do {
            try context.network.start()
            context.events.record(HostEvent(kind: .networkConfigured, message: "virtual network ready: \(configuration.virtualSwitches.count) "
                                            + "virtual switch(es), \(configuration.portGroups.count) port group(s)"))
        } catch {
            context.events.record(HostEvent(kind: .networkUnavailable, severity: .error, message: "the virtual network could not be set up: \(error.message)"))
        }
    }

    /// This host's virtual switches and port groups.
    public var network: AgentNetwork { context.network }

    /// The port groups a VM's NICs use (from its `.vmx`): what a destination host must have.
    public func portGroups(of reference: String) throws(AgentError) -> [String] {
        try lookup(reference).networkRequirements()
    }

    /// Refuses (409) when this host lacks any port group the VM needs: call it on the destination
    /// before a migration or restart moves anything.
    public func checkNetwork(for portGroups: [String]) throws(AgentError) {
        try context.network.requirePortGroups(portGroups)
    }

    /// Announces a running VM's NIC addresses on this host's network (after it resumed here).
    public func announceNetwork(of reference: String) throws(AgentError) {
        try lookup(reference).announceNetwork()
    }
}
