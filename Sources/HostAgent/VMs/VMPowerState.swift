/// A VM's state as its host agent owns it.
public enum VMPowerState: String, Codable, Sendable, CaseIterable {
    case poweredOff
    /// Its files are being opened and its VMM started.
    case starting
    case running
    /// Its vCPUs are held out of the guest (lease gap, or an operation paused it).
    case paused
    /// Powering off.
    case stopping
    /// Its VMM died unexpectedly; `reason` says how.
    case crashed
    /// This host lost the VM's locks (it was fenced, or its slot was taken over); the VM may run
    /// elsewhere now.
    case lost

    /// True while a VMM process exists for the VM.
    public var isActive: Bool { self == .starting || self == .running || self == .paused || self == .stopping }
}
