internal import SystemSupport
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A virtio-net device (legacy virtio-pci) backed by a ``NetworkPort``: a receive, a transmit and
/// a control queue; the MAC address and link status in its configuration space; checksum and TCP
/// segmentation offloads passed through to a TAP device; mergeable receive buffers.
///
/// All of its I/O runs off the vCPU threads: a notify only wakes the device's receive thread (which
/// polls the port for frames and fills the guest's buffers) or its transmit thread (which sends
/// the guest's frames and serves the control queue). Every chain is checked before use: direction,
/// guest-memory bounds, sizes, and the header's offload requests against what was negotiated; a
/// chain that breaks a rule is returned with nothing done and counted.
final class VirtioNet: VirtioDeviceModel {
    struct Settings: Sendable {
        var mac: MACAddress
        var linkUp: Bool
        var announceRequested = false
        var features: UInt32 = 0
        var filter = ReceiveFilter()
        /// The guest's IPv4 address, learned from the ARP packets it sends (for gratuitous ARP).
        var guestIPv4: [UInt8]?
    }

    struct Schedule: Sendable {
        var kicks: UInt64 = 0
        var stopping = false
        /// Monotonic times at which announcement rounds are due.
        var announcements: [UInt64] = []
    }

    let index: Int
    let permanentMAC: MACAddress
    let port: NetworkPort
    let memory: GuestMemory
    let eventHandler: (@Sendable (NetworkInterfaceEvent) -> Void)?
    let settings: Mutex<Settings>
    let statistics = Mutex(NetworkInterfaceStatistics())
    let gate = DeviceActivityGate()
    /// Wakes the transmit thread (notifies, announcements, stop).
    let schedule = Monitor(Schedule())
    /// Wakes the receive thread (receive buffers posted, state changes, stop).
    let receiveWake: OwnedDescriptor
    private let transportBox = Mutex<WeakTransport>(WeakTransport())
    private let threads = Mutex<[NativeThread]>([])

    struct WeakTransport: @unchecked Sendable { weak var value: (any VirtioQueueTransport)? }

    init(index: Int, configuration: NetworkInterfaceConfiguration, memory: GuestMemory) throws(HypervisorError) {
        let wake = cvmfs_eventfd(0, CVMFS_EFD_CLOEXEC | CVMFS_EFD_NONBLOCK)
        guard wake >= 0 else { throw .systemCall("eventfd for NIC \(index)", errno: -wake) }
        receiveWake = OwnedDescriptor(wake)
        self.index = index
        permanentMAC = configuration.macAddress
        port = configuration.port
        self.memory = memory
        eventHandler = configuration.eventHandler
        settings = Mutex(Settings(mac: configuration.macAddress, linkUp: configuration.connected))
    }

    var transport: (any VirtioQueueTransport)? { transportBox.withLock { $0.value } }

    // MARK: VirtioDeviceModel

    var deviceType: UInt16 { 1 }
    var transitionalPCIDeviceID: UInt16 { 0x1000 }
    var pciClassCode: UInt32 { 0x020000 }
    var queueSizes: [UInt16] { [256, 256, 64] }

    var offeredFeatures: UInt32 {
        typealias P = VirtioNetProtocol
        var features = P.featureMAC | P.featureStatus | P.featureMergeableReceiveBuffers | P.featureAnyLayout
            | P.featureControlQueue | P.featureControlReceiveMode | P.featureControlMACAddress | P.featureGuestAnnounce
            | P.featureChecksum | P.featureHostTSO4 | P.featureHostTSO6 | P.featureHostECN
        if port.kind == .tap {
            features |= P.featureGuestChecksum | P.featureGuestTSO4 | P.featureGuestTSO6 | P.featureGuestECN
        }
        return features
    }

    /// `struct virtio_net_config` (legacy): mac[6], le16 status.
    var configurationBytes: [UInt8] {
        settings.withLock { s in
            var status: UInt16 = s.linkUp ? VirtioNetProtocol.statusLinkUp : 0
            if s.announceRequested { status |= VirtioNetProtocol.statusAnnounce }
            return s.mac.bytes + [UInt8(truncatingIfNeeded: status), UInt8(truncatingIfNeeded: status >> 8)]
        }
    }

    func servesQueueItself(_ index: Int) -> Bool { true }

    func attach(_ transport: any VirtioQueueTransport) { transportBox.withLock { $0.value = transport } }

    func queueNotified(_ queue: Int) {
        if queue == VirtioNetProtocol.receiveQueue {
            wakeReceiver()
        } else {
            schedule.withLock { $0.kicks &+= 1 }
        }
    }

    /// The legacy driver sets the address by writing the configuration space (bytes 0–5).
    func writeConfiguration(offset: Int, bytes: [UInt8]) {
        guard offset >= 0, offset < 6 else { return }
        let changed = settings.withLock { s -> MACAddress? in
            var address = s.mac.bytes
            for (i, byte) in bytes.enumerated() where offset + i < 6 { address[offset + i] = byte }
            guard let new = MACAddress(bytes: address), new != s.mac else { return nil }
            s.mac = new
            return new
        }
        if let changed { eventHandler?(.macAddressChanged(interface: index, changed)) }
    }

    func driverStatusChanged(_ status: UInt8, negotiatedFeatures features: UInt32) {
        typealias P = VirtioNetProtocol
        if status == 0 {
            // Reset: the configured address and the default receive mode come back.
            let restored = settings.withLock { s -> MACAddress? in
                defer {
                    s.features = 0
                    s.filter = ReceiveFilter()
                    s.announceRequested = false
                }
                guard s.mac != permanentMAC else { return nil }
                s.mac = permanentMAC
                return permanentMAC
            }
            gate.setDriverReady(false)
            if let restored { eventHandler?(.macAddressChanged(interface: index, restored)) }
            return
        }
        guard status & VirtioStatus.driverOK != 0, status & VirtioStatus.failed == 0 else { return }
        settings.withLock { $0.features = features }
        port.setOffloads(checksum: features & P.featureGuestChecksum != 0, tcp4: features & P.featureGuestTSO4 != 0,
                         tcp6: features & P.featureGuestTSO6 != 0, ecn: features & P.featureGuestECN != 0)
        gate.setDriverReady(true)
        wakeReceiver()
        schedule.withLock { $0.kicks &+= 1 }
    }

    func quiesce() { gate.quiesce() }

    // MARK: Control from the VMM

    /// Starts the receive and transmit threads (when the VM starts running).
    func start() throws(HypervisorError) {
        do {
            let receiver = try NativeThread(name: "vmm-net\(index)-rx") { [self] in receiveLoop() }
            let transmitter = try NativeThread(name: "vmm-net\(index)-tx") { [self] in transmitLoop() }
            threads.withLock { $0 = [receiver, transmitter] }
        } catch {
            stop()
            throw .systemCall("pthread_create for NIC \(index)", errno: error.errno)
        }
    }

    /// Stops and joins the device threads (when the VM stops); frames in flight are dropped.
    func stop() {
        schedule.withLock { $0.stopping = true }
        gate.stop()
        wakeReceiver()
        for thread in threads.withLock({ $0 }) { thread.join() }
        threads.withLock { $0.removeAll() }
    }

    /// While paused the device writes nothing into guest memory; what it was doing finishes first.
    func setPaused(_ paused: Bool) {
        gate.setPaused(paused)
        if !paused {
            wakeReceiver()
            schedule.withLock { $0.kicks &+= 1 }
        }
    }

    /// Connects or disconnects the link (the driver sees the status change).
    func setLink(up: Bool) {
        let changed = settings.withLock { s -> Bool in
            defer { s.linkUp = up }
            return s.linkUp != up
        }
        guard changed else { return }
        transport?.signalConfigurationChange()
        wakeReceiver()
    }

    /// Announces the guest's address on the host's network now and over the next half second
    /// (RARP, and gratuitous ARP once the guest's IPv4 address is known); a driver that negotiated
    /// GUEST_ANNOUNCE is also asked to announce itself.
    func announce() {
        let now = MonotonicClock.nanoseconds
        schedule.withLock { $0.announcements = Announcement.scheduleMilliseconds.map { now + $0 * 1_000_000 } }
        let askGuest = settings.withLock { s -> Bool in
            guard s.features & VirtioNetProtocol.featureGuestAnnounce != 0 else { return false }
            s.announceRequested = true
            return true
        }
        if askGuest { transport?.signalConfigurationChange() }
    }

    var counters: NetworkInterfaceStatistics {
        var counters = statistics.withLock { $0 }
        settings.withLock { s in
            counters.macAddress = s.mac
            counters.linkUp = s.linkUp
        }
        return counters
    }

    func wakeReceiver() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(receiveWake.rawValue, $0.baseAddress, 8) }
    }

    func drainReceiveWake() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { read(receiveWake.rawValue, $0.baseAddress, 8) }
    }

    func count(_ update: (inout NetworkInterfaceStatistics) -> Void) { statistics.withLock { update(&$0) } }
}
