import HostAgent
import HostAgentAPI
import HostNetworking

/// Network values between the API's schemas and the library, every number checked.
enum NetworkConversions {
    static func virtualSwitch(_ body: Components.Schemas.VirtualSwitch) throws(AgentError) -> VirtualSwitch {
        guard (body.uplinks ?? []).count <= 8 else { throw AgentError(.invalidArgument, "at most 8 uplinks", field: "uplinks") }
        let mtu = try Validation.within(body.mtu, VirtualSwitch.mtuRange, field: "mtu") ?? 1500
        let entry = VirtualSwitch(name: body.name, uplinks: body.uplinks ?? [], mtu: mtu)
        try check(NetworkConfiguration(virtualSwitches: [entry]))
        return entry
    }

    static func portGroup(_ body: Components.Schemas.PortGroup) throws(AgentError) -> PortGroup {
        let vlan = try Validation.within(body.vlan, PortGroup.vlanRange, field: "vlan") ?? 0
        let security = SecurityPolicy(allowPromiscuous: body.security?.allowPromiscuous ?? false,
                                      allowMACChanges: body.security?.allowMACChanges ?? false,
                                      allowForgedTransmits: body.security?.allowForgedTransmits ?? false)
        var shaping: TrafficShaping?
        if let requested = body.shaping {
            let average = try Validation.nonNegative(requested.averageBitsPerSecond, field: "shaping.averageBitsPerSecond") ?? 0
            let peak = try Validation.nonNegative(requested.peakBitsPerSecond, field: "shaping.peakBitsPerSecond") ?? average
            let burst = try Validation.nonNegative(requested.burstBytes, field: "shaping.burstBytes") ?? 0
            shaping = TrafficShaping(averageBitsPerSecond: average, peakBitsPerSecond: peak, burstBytes: burst)
        }
        let group = PortGroup(name: body.name, virtualSwitch: body.vswitch, vlan: vlan, security: security, shaping: shaping)
        try check(NetworkConfiguration(virtualSwitches: [VirtualSwitch(name: body.vswitch)], portGroups: [group]))
        return group
    }

    /// The library's own checks of names and ranges, as a 400.
    private static func check(_ configuration: NetworkConfiguration) throws(AgentError) {
        do { try configuration.validate() } catch { throw AgentError(.invalidArgument, error.message) }
    }

    static func info(_ entry: VirtualSwitch, _ network: AgentNetwork) -> Components.Schemas.VirtualSwitchInfo {
        let counters = network.host.uplinkCounters[entry.name]
        return .init(name: entry.name, uplinks: entry.uplinks, mtu: entry.mtu, source: network.isFixed(switch: entry.name) ? .configuration : .api,
                     activeUplink: network.host.activeUplinks[entry.name],
                     portGroups: network.configuration.portGroups.filter { $0.virtualSwitch == entry.name }.map(\.name),
                     toUplinkFrames: counters.map { Int64(clamping: $0.toUplink) },
                     fromUplinkFrames: counters.map { Int64(clamping: $0.fromUplink) },
                     droppedFrames: counters.map { Int64(clamping: $0.dropped) })
    }

    static func info(_ group: PortGroup, _ network: AgentNetwork) -> Components.Schemas.PortGroupInfo {
        .init(name: group.name, vswitch: group.virtualSwitch, vlan: group.vlan, security: security(group.security),
              shaping: group.shaping.map {
                  .init(averageBitsPerSecond: Int64(clamping: $0.averageBitsPerSecond), peakBitsPerSecond: Int64(clamping: $0.peakBitsPerSecond),
                        burstBytes: Int64(clamping: $0.burstBytes))
              },
              source: network.isFixed(portGroup: group.name) ? .configuration : .api,
              ports: network.host.ports.filter { $0.portGroup == group.name }.map {
                  .init(port: $0.name, vm: $0.vm, nic: $0.nic, macAddress: $0.effectiveMAC)
              })
    }

    static func security(_ policy: SecurityPolicy) -> Components.Schemas.SecurityPolicy {
        .init(allowPromiscuous: policy.allowPromiscuous, allowMACChanges: policy.allowMACChanges, allowForgedTransmits: policy.allowForgedTransmits)
    }

    static func nic(_ view: NICView) -> Components.Schemas.Nic {
        .init(index: view.index, portGroup: view.portGroup, macAddress: view.macAddress, effectiveMACAddress: view.effectiveMACAddress,
              connected: view.connected, port: view.port, linkUp: view.linkUp, vmm: view.vmm.map(vmm), host: view.host.map(host))
    }

    static func vmm(_ c: VMMNetworkCounters) -> Components.Schemas.NICCounters {
        .init(receivedPackets: Int64(clamping: c.receivedPackets), receivedBytes: Int64(clamping: c.receivedBytes),
              receiveDropped: Int64(clamping: c.receiveDropped), receiveFiltered: Int64(clamping: c.receiveFiltered),
              transmittedPackets: Int64(clamping: c.transmittedPackets), transmittedBytes: Int64(clamping: c.transmittedBytes),
              transmitDropped: Int64(clamping: c.transmitDropped), malformedChains: Int64(clamping: c.malformedChains),
              announcements: Int64(clamping: c.announcements))
    }

    static func host(_ c: PortCounters) -> Components.Schemas.PortCounters {
        .init(forgedDropped: Int64(clamping: c.forgedDropped), taggedDropped: Int64(clamping: c.taggedDropped),
              promiscuousDropped: Int64(clamping: c.promiscuousDropped), macChangeDropped: Int64(clamping: c.macChangeDropped),
              shapingDropped: Int64(clamping: c.shapingDropped), fromGuestPackets: Int64(clamping: c.fromGuestPackets),
              fromGuestBytes: Int64(clamping: c.fromGuestBytes), toGuestPackets: Int64(clamping: c.toGuestPackets),
              toGuestBytes: Int64(clamping: c.toGuestBytes), toGuestDropped: Int64(clamping: c.toGuestDropped))
    }
}
