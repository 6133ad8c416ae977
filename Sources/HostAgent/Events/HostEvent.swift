/// Something that happened on this host, as the agent records it (`GET /v1/events`).
///
/// Events are numbered in order; a client that was away asks for everything after the last
/// number it saw. The `kind` says what happened; `vm` and `volume` say to what.
public struct HostEvent: Codable, Sendable, Equatable {
    /// What kind of thing happened.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case agentStarted, agentStopping
        case volumeAttached, volumeUnreachable, volumeMembershipLost, volumeRejoined
        case mountStarted, mountStopped
        case vmRegistered, vmUnregistered, vmCreated
        case vmPoweredOn, vmPoweredOff, vmGuestPoweredOff, vmPaused, vmResumed, vmReset
        case vmCrashed, vmLockLost, vmAdopted
        case vmMigrationStarted, vmMigrated, vmMigratedIn, vmMigrationFailed, vmMigrationCancelled
        case haConfigured, haHostFailed, haRestarted, haRestartFailed, haIsolated, vmMonitoringReset
        case hostMaintenanceEntered, hostMaintenanceExited
        case networkConfigured, networkUnavailable, vmNetworkAnnounced, vmNetworkAddressChanged
    }

    /// How much it matters.
    public enum Severity: String, Codable, Sendable { case info, warning, error }

    /// Position in this host's event log (1, 2, …).
    public var sequence: UInt64
    /// Wall-clock time, nanoseconds since the epoch.
    public var timeNanoseconds: Int64
    public var kind: Kind
    public var severity: Severity
    /// The VM's UUID and name, for VM events.
    public var vm: String?
    public var vmName: String?
    /// The volume's name, for volume events and VMs.
    public var volume: String?
    /// A sentence a person can read.
    public var message: String

    public init(sequence: UInt64 = 0, timeNanoseconds: Int64 = 0, kind: Kind, severity: Severity = .info, vm: String? = nil,
                vmName: String? = nil, volume: String? = nil, message: String) {
        self.sequence = sequence
        self.timeNanoseconds = timeNanoseconds
        self.kind = kind
        self.severity = severity
        self.vm = vm
        self.vmName = vmName
        self.volume = volume
        self.message = message
    }
}
