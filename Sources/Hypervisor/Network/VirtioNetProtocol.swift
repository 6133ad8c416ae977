/// Feature bits, configuration layout, header and control commands of virtio-net
/// (`<linux/virtio_net.h>`, virtio 1.1 §5.1), as the legacy device uses them.
enum VirtioNetProtocol {
    // Feature bits (legacy devices show bits 0–31).
    static let featureChecksum: UInt32 = 1 << 0           // CSUM: the device completes partial checksums
    static let featureGuestChecksum: UInt32 = 1 << 1      // GUEST_CSUM: the driver accepts partial checksums
    static let featureMAC: UInt32 = 1 << 5
    static let featureGuestTSO4: UInt32 = 1 << 7
    static let featureGuestTSO6: UInt32 = 1 << 8
    static let featureGuestECN: UInt32 = 1 << 9
    static let featureHostTSO4: UInt32 = 1 << 11
    static let featureHostTSO6: UInt32 = 1 << 12
    static let featureHostECN: UInt32 = 1 << 13
    static let featureMergeableReceiveBuffers: UInt32 = 1 << 15
    static let featureStatus: UInt32 = 1 << 16
    static let featureControlQueue: UInt32 = 1 << 17
    static let featureControlReceiveMode: UInt32 = 1 << 18
    static let featureGuestAnnounce: UInt32 = 1 << 21
    static let featureControlMACAddress: UInt32 = 1 << 23
    static let featureAnyLayout: UInt32 = 1 << 27

    // Configuration space: mac[6] @0, le16 status @6.
    static let statusLinkUp: UInt16 = 1
    static let statusAnnounce: UInt16 = 2

    // Header flags and GSO types.
    static let headerNeedsChecksum: UInt8 = 1
    static let headerDataValid: UInt8 = 2
    static let gsoNone: UInt8 = 0
    static let gsoTCPv4: UInt8 = 1
    static let gsoTCPv6: UInt8 = 4
    static let gsoECN: UInt8 = 0x80

    /// `struct virtio_net_hdr` (10 bytes) and, with MRG_RXBUF, `virtio_net_hdr_mrg_rxbuf` (12).
    static let headerSize = 10
    static let mergeableHeaderSize = 12

    /// Largest frame accepted from the driver or delivered to it, without the header: a 64 KiB
    /// segmentation-offload packet plus its Ethernet header.
    static let maximumFrame = 65_550
    /// Smallest frame: an Ethernet header.
    static let minimumFrame = 14

    // Queues.
    static let receiveQueue = 0
    static let transmitQueue = 1
    static let controlQueue = 2

    // Control queue: class, command, data, then a one-byte ack the device writes.
    static let controlReceiveMode: UInt8 = 0
    static let commandPromiscuous: UInt8 = 0
    static let commandAllMulticast: UInt8 = 1
    static let controlMAC: UInt8 = 1
    static let commandMACTableSet: UInt8 = 0
    static let commandMACAddressSet: UInt8 = 1
    static let controlAnnounce: UInt8 = 3
    static let commandAnnounceAck: UInt8 = 0
    static let ackOK: UInt8 = 0
    static let ackError: UInt8 = 1
    /// Most addresses one MAC_TABLE_SET table may carry (QEMU keeps 64).
    static let macTableCapacity = 64
}

/// The fields of a virtio-net header, read from or written to the 12-byte wire form.
struct VirtioNetHeader: Equatable, Sendable {
    var flags: UInt8 = 0
    var gsoType: UInt8 = 0
    var headerLength: UInt16 = 0
    var gsoSize: UInt16 = 0
    var checksumStart: UInt16 = 0
    var checksumOffset: UInt16 = 0
    var bufferCount: UInt16 = 0

    init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
         checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0, bufferCount: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
        self.bufferCount = bufferCount
    }

    /// Decodes the first 10 (or 12) of `bytes` (little-endian fields).
    init(_ bytes: [UInt8]) {
        func u16(_ offset: Int) -> UInt16 { offset + 1 < bytes.count ? UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8 : 0 }
        flags = bytes.first ?? 0
        gsoType = bytes.count > 1 ? bytes[1] : 0
        headerLength = u16(2)
        gsoSize = u16(4)
        checksumStart = u16(6)
        checksumOffset = u16(8)
        bufferCount = u16(10)
    }

    /// The 12-byte wire form (cut to `size` bytes).
    func encoded(size: Int = VirtioNetProtocol.mergeableHeaderSize) -> [UInt8] {
        var bytes = [flags, gsoType]
        for value in [headerLength, gsoSize, checksumStart, checksumOffset, bufferCount] {
            bytes += [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)]
        }
        return Array(bytes.prefix(size))
    }

    /// The header to hand to the host for a frame the driver sent: only what the negotiated
    /// features allow (a partial checksum with CSUM, TCP segmentation with HOST_TSO4/6), or nil
    /// when the driver asked for something it did not negotiate.
    func sanitizedForTransmit(negotiated features: UInt32) -> VirtioNetHeader? {
        typealias P = VirtioNetProtocol
        var clean = VirtioNetHeader()
        if flags & P.headerNeedsChecksum != 0 {
            guard features & P.featureChecksum != 0 else { return nil }
            clean.flags = P.headerNeedsChecksum
            clean.checksumStart = checksumStart
            clean.checksumOffset = checksumOffset
        }
        let ecn = gsoType & P.gsoECN != 0
        switch gsoType & ~P.gsoECN {
        case P.gsoNone:
            guard !ecn else { return nil }
        case P.gsoTCPv4 where features & P.featureHostTSO4 != 0, P.gsoTCPv6 where features & P.featureHostTSO6 != 0:
            guard !ecn || features & P.featureHostECN != 0, clean.flags & P.headerNeedsChecksum != 0, gsoSize > 0 else { return nil }
            clean.gsoType = gsoType
            clean.gsoSize = gsoSize
            clean.headerLength = headerLength
        default:
            return nil
        }
        return clean
    }

    /// The header to give the driver for a frame the host delivered: offload fields only when the
    /// driver negotiated them (the host is asked for no more; this is a second line).
    func sanitizedForReceive(negotiated features: UInt32) -> VirtioNetHeader? {
        typealias P = VirtioNetProtocol
        var clean = VirtioNetHeader()
        if flags & P.headerNeedsChecksum != 0 {
            guard features & P.featureGuestChecksum != 0 else { return nil }
            clean.flags = P.headerNeedsChecksum
            clean.checksumStart = checksumStart
            clean.checksumOffset = checksumOffset
        } else if flags & P.headerDataValid != 0, features & P.featureGuestChecksum != 0 {
            clean.flags = P.headerDataValid
        }
        let kind = gsoType & ~P.gsoECN
        if kind != P.gsoNone {
            let allowed = (kind == P.gsoTCPv4 && features & P.featureGuestTSO4 != 0)
                || (kind == P.gsoTCPv6 && features & P.featureGuestTSO6 != 0)
            guard allowed, gsoType & P.gsoECN == 0 || features & P.featureGuestECN != 0 else { return nil }
            clean.gsoType = gsoType
            clean.gsoSize = gsoSize
            clean.headerLength = headerLength
        }
        return clean
    }
}
