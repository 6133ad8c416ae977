internal import SystemSupport
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// The host end of a virtual NIC: a descriptor that carries one frame per read and per write,
/// each preceded by a 12-byte virtio-net header (`struct virtio_net_hdr_mrg_rxbuf`).
///
/// A TAP device opened with `IFF_VNET_HDR` (normally created by the host agent, which passes the
/// descriptor to the VMM) is the real thing; a `SOCK_SEQPACKET` or `SOCK_DGRAM` socket carrying the
/// same records serves tests and user-space switches. The port owns its descriptor and closes it
/// when released; a VM rebuilt after a reset keeps the same port.
public final class NetworkPort: Sendable, CustomStringConvertible {
    /// What the descriptor is.
    public enum Kind: Sendable, Equatable {
        /// A TAP interface (checksum and segmentation offloads can be turned on).
        case tap
        /// A socket with message boundaries (no offloads).
        case packetSocket
    }

    /// Bytes of the virtio-net header before every frame on the descriptor.
    public static let headerSize = 12

    public let kind: Kind
    /// The TAP interface's name, or "socket".
    public let name: String
    private let descriptor: OwnedDescriptor

    /// Takes ownership of a TAP descriptor. It must be an attached TAP (not TUN) interface opened
    /// with `IFF_VNET_HDR`; the header size is set to 12 bytes and the descriptor made non-blocking.
    ///
    /// - Throws: ``HypervisorError/Code/invalidConfiguration`` naming what the descriptor is not.
    public init(tapDescriptor: Int32) throws(HypervisorError) {
        let owned = OwnedDescriptor(tapDescriptor)
        var flags: UInt32 = 0
        var rawName = [CChar](repeating: 0, count: 16)
        let info = cvmfs_tap_info(tapDescriptor, &flags, &rawName)
        guard info == 0 else {
            throw HypervisorError(.invalidConfiguration, "descriptor \(tapDescriptor) is not an attached TAP device (TUNGETIFF)", errno: -info)
        }
        let interface = String(decoding: rawName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard cvmfs_tap_flags_are_tap(flags) != 0 else {
            throw HypervisorError(.invalidConfiguration, "\(interface) is a TUN (layer 3) device; a NIC needs a TAP device")
        }
        guard cvmfs_tap_flags_have_vnet_header(flags) != 0 else {
            throw HypervisorError(.invalidConfiguration, "TAP device \(interface) was created without IFF_VNET_HDR")
        }
        let size = cvmfs_tap_set_vnet_header_size(tapDescriptor, Int32(Self.headerSize))
        guard size == 0 else { throw .systemCall("TUNSETVNETHDRSZ on \(interface)", errno: -size) }
        let blocking = cvmfs_set_nonblocking(tapDescriptor)
        guard blocking == 0 else { throw .systemCall("O_NONBLOCK on \(interface)", errno: -blocking) }
        descriptor = owned
        kind = .tap
        name = interface
    }

    /// Takes ownership of a socket that carries one header + frame per message (tests, user-space
    /// switches); it is made non-blocking.
    public init(packetSocketDescriptor: Int32) throws(HypervisorError) {
        let owned = OwnedDescriptor(packetSocketDescriptor)
        let blocking = cvmfs_set_nonblocking(packetSocketDescriptor)
        guard blocking == 0 else { throw .systemCall("O_NONBLOCK on a packet socket", errno: -blocking) }
        descriptor = owned
        kind = .packetSocket
        name = "socket"
    }

    public var description: String { kind == .tap ? "TAP \(name)" : "packet socket fd \(descriptor.rawValue)" }

    /// The descriptor to poll for frames.
    var pollDescriptor: Int32 { descriptor.rawValue }

    /// Writes one frame: `header` (12 bytes) then `segments`. Returns the bytes written or -errno.
    func transmit(header: UnsafeRawBufferPointer, segments: [UnsafeRawBufferPointer]) -> Int {
        var bases: [UnsafeRawPointer?] = [header.baseAddress]
        var lengths: [Int] = [header.count]
        for segment in segments where segment.count > 0 {
            bases.append(segment.baseAddress)
            lengths.append(segment.count)
        }
        return bases.withUnsafeBufferPointer { basePointer in
            lengths.withUnsafeBufferPointer { lengthPointer in
                cvmfs_writev(descriptor.rawValue, basePointer.baseAddress, lengthPointer.baseAddress, Int32(bases.count))
            }
        }
    }

    /// Reads one header + frame into `buffer`; the bytes read, or -errno (-EAGAIN: none waiting).
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        cvmfs_read(descriptor.rawValue, buffer.baseAddress, buffer.count)
    }

    /// Offloads the TAP may use towards the VMM: frames with a partial checksum (`checksum`) and
    /// large TCP segments (`tcp4`, `tcp6`, with ECN). Sockets ignore this. Returns 0 or -errno.
    @discardableResult
    func setOffloads(checksum: Bool, tcp4: Bool, tcp6: Bool, ecn: Bool) -> Int32 {
        guard kind == .tap else { return 0 }
        var flags: UInt32 = 0
        if checksum {
            flags |= CVMFS_TUN_F_CSUM
            if tcp4 { flags |= CVMFS_TUN_F_TSO4 }
            if tcp6 { flags |= CVMFS_TUN_F_TSO6 }
            if ecn && (tcp4 || tcp6) { flags |= CVMFS_TUN_F_TSO_ECN }
        }
        return cvmfs_tap_set_offload(descriptor.rawValue, flags)
    }
}
