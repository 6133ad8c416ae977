internal import SystemSupport
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// The user-space part of a virtual switch: moves frames between its uplink and its VLAN bridges,
/// adding and removing 802.1Q tags. This kernel has neither 802.1Q devices nor bridge VLAN
/// filtering, so the tags are handled here (docs/NETWORKING.md).
///
/// Each VLAN bridge has a trunk port, a TAP device whose descriptor this object holds. Frames the
/// bridge sends to it (flooded, or to addresses learned behind the uplink) are read, tagged with
/// the VLAN (none for VLAN 0), and sent on the active uplink through an `AF_PACKET` socket. Frames
/// from the uplink (the kernel reports their tag as auxiliary data) are written to the trunk port
/// of their VLAN; frames of a VLAN without a bridge here, and doubly tagged frames, are dropped.
/// The active uplink is the first in the list whose link runs; it is checked every second.
/// The threads run at a lower priority (nice 10) than the agent's heartbeat and API threads.
final class UplinkTrunk: Sendable {
    /// The trunk port of one VLAN bridge.
    struct Leg: Sendable {
        var vlan: Int
        var name: String
        var tap: OwnedDescriptor
    }

    /// Frames moved and dropped.
    struct Counters: Sendable, Equatable {
        var toUplink: UInt64 = 0
        var fromUplink: UInt64 = 0
        /// From the uplink with a VLAN that has no bridge here, or doubly tagged.
        var droppedFromUplink: UInt64 = 0
        /// To the uplink while no uplink was up, or refused by it.
        var droppedToUplink: UInt64 = 0
    }

    let switchName: String
    let uplinks: [String]
    private let legs: [Int: Leg]
    private let uplink = Mutex<(name: String, socket: OwnedDescriptor)?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let wake: OwnedDescriptor
    private let threads = Mutex<[NativeThread]>([])
    private let counters = Mutex(Counters())

    init(switchName: String, uplinks: [String], legs: [Leg]) throws(NetworkError) {
        let fd = cvmfs_eventfd(0, CVMFS_EFD_CLOEXEC | CVMFS_EFD_NONBLOCK)
        guard fd >= 0 else { throw NetworkError(.failed, "eventfd for the uplink of '\(switchName)': errno \(-fd)") }
        wake = OwnedDescriptor(fd)
        self.switchName = switchName
        self.uplinks = uplinks
        self.legs = Dictionary(uniqueKeysWithValues: legs.map { ($0.vlan, $0) })
    }

    var statistics: Counters { counters.withLock { $0 } }
    /// The uplink carrying the traffic now.
    var activeUplink: String? { uplink.withLock { $0?.name } }

    func start() throws(NetworkError) {
        do {
            let inbound = try NativeThread(name: "vswitch-rx") { [self] in fromUplinkLoop() }
            let outbound = try NativeThread(name: "vswitch-tx") { [self] in toUplinkLoop() }
            threads.withLock { $0 = [inbound, outbound] }
        } catch {
            stop()
            throw NetworkError(.failed, "cannot start the uplink threads of '\(switchName)': \(error)")
        }
    }

    /// Stops and joins the threads; the trunk ports close with this object.
    func stop() {
        stopping.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wake.rawValue, $0.baseAddress, 8) }
        for thread in threads.withLock({ $0 }) { thread.join() }
        threads.withLock { $0.removeAll() }
        uplink.withLock { $0 = nil }
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Keeps the uplink socket on the first running uplink; returns its descriptor.
    private func selectUplink() -> Int32? {
        let wanted = uplinks.first { cvmfs_interface_running($0) == 1 }
        return uplink.withLock { current -> Int32? in
            if current?.name == wanted { return current?.socket.rawValue }
            current = nil
            guard let wanted else { return nil }
            let fd = cvmfs_packet_socket(wanted)
            guard fd >= 0 else { return nil }
            current = (wanted, OwnedDescriptor(fd))
            return fd
        }
    }

    private func fromUplinkLoop() {
        _ = cvmfs_set_thread_nice(10)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
        defer { buffer.deallocate() }
        var checked: UInt64 = 0
        var socket: Int32?
        while !isStopping {
            let now = MonotonicClock.nanoseconds
            if socket == nil || now - checked > 1_000_000_000 {
                socket = selectUplink()
                checked = now
            }
            var ready: Int32 = 0, woken: Int32 = 0
            _ = cvmfs_poll_two(socket ?? -1, wake.rawValue, 250, &ready, &woken)
            guard let fd = socket, ready != 0 else { continue }
            var moved: UInt64 = 0, dropped: UInt64 = 0
            for _ in 0..<256 {
                var tag: Int32 = -1
                let n = cvmfs_packet_receive(fd, buffer.baseAddress, buffer.count, &tag)
                if n == -Int(EAGAIN) { break }
                guard n >= 14, n <= buffer.count else {
                    if n < 0 { socket = nil; break }    // the uplink went away: choose again
                    dropped += 1
                    continue
                }
                let type = UInt16(buffer[12]) << 8 | UInt16(buffer[13])
                let vlan = tag < 0 ? 0 : Int(tag & 0xFFF)
                guard type != 0x8100, type != 0x88A8, let leg = legs[vlan] else {
                    dropped += 1
                    continue
                }
                if write(leg.tap.rawValue, buffer.baseAddress, n) == n { moved += 1 } else { dropped += 1 }
            }
            counters.withLock {
                $0.fromUplink += moved
                $0.droppedFromUplink += dropped
            }
        }
    }

    private func toUplinkLoop() {
        _ = cvmfs_set_thread_nice(10)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536 + 4, alignment: 16)
        defer { buffer.deallocate() }
        guard let base = buffer.baseAddress else { return }
        var descriptors = [pollfd(fd: wake.rawValue, events: Int16(POLLIN), revents: 0)]
        let order = legs.values.sorted { $0.vlan < $1.vlan }
        for leg in order { descriptors.append(pollfd(fd: leg.tap.rawValue, events: Int16(POLLIN), revents: 0)) }
        while !isStopping {
            let ready = poll(&descriptors, nfds_t(descriptors.count), 1000)
            guard ready > 0 else { continue }
            var moved: UInt64 = 0, dropped: UInt64 = 0
            let socket = uplink.withLock { $0?.socket.rawValue }
            for (index, leg) in order.enumerated() where descriptors[index + 1].revents != 0 {
                for _ in 0..<256 {
                    // Read behind 4 spare bytes so a tag can be inserted without copying the payload.
                    let n = cvmfs_read(leg.tap.rawValue, base + 4, 65_536)
                    guard n >= 14 else { break }
                    let type = UInt16(buffer[16]) << 8 | UInt16(buffer[17])
                    guard let socket, type != 0x8100, type != 0x88A8 else {
                        dropped += 1
                        continue
                    }
                    var start = 4, length = n
                    if leg.vlan != 0 {
                        // dst, src, then 0x8100 + TCI, then the original EtherType and payload.
                        UnsafeMutableRawBufferPointer(rebasing: buffer[0..<12])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[4..<16]))
                        buffer[12] = 0x81
                        buffer[13] = 0x00
                        buffer[14] = UInt8(leg.vlan >> 8)
                        buffer[15] = UInt8(leg.vlan & 0xFF)
                        start = 0
                        length = n + 4
                    }
                    if cvmfs_packet_send(socket, base + start, length) == length { moved += 1 } else { dropped += 1 }
                }
            }
            counters.withLock {
                $0.toUplink += moved
                $0.droppedToUplink += dropped
            }
        }
    }
}
