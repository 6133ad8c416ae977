/// The frames a VMM sends for its guest when the VM resumes on another host, so that switches
/// learn the guest's new port at once (QEMU's announce-self): a RARP "reverse request" from the
/// guest's address, and a gratuitous ARP when the guest's IPv4 address is known.
enum Announcement {
    /// When each round is sent after the announcement starts, in milliseconds (QEMU sends 5 rounds,
    /// 50 ms apart at first, then 100 ms more each time).
    static let scheduleMilliseconds: [UInt64] = [0, 50, 150, 300, 500]

    /// A broadcast RARP frame (EtherType 0x8035, opcode 3) from `mac`, padded to 60 bytes.
    static func reverseARP(from mac: MACAddress) -> [UInt8] {
        var frame = MACAddress.broadcast.bytes + mac.bytes + [0x80, 0x35]
        frame += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]     // Ethernet, IPv4, lengths, reverse request
        frame += mac.bytes + [0, 0, 0, 0] + mac.bytes + [0, 0, 0, 0]
        return frame + [UInt8](repeating: 0, count: 60 - frame.count)
    }

    /// A broadcast gratuitous ARP request for `address` (sender = target = address), padded to 60 bytes.
    static func gratuitousARP(from mac: MACAddress, address: [UInt8]) -> [UInt8] {
        var frame = MACAddress.broadcast.bytes + mac.bytes + [0x08, 0x06]
        frame += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]     // Ethernet, IPv4, lengths, request
        frame += mac.bytes + address + [0, 0, 0, 0, 0, 0] + address
        return frame + [UInt8](repeating: 0, count: 60 - frame.count)
    }

    /// The IPv4 address a frame the guest sent says the guest has: the sender of an ARP packet
    /// from `mac`. Nil for anything else.
    static func senderIPv4(ofARP frame: [UInt8], from mac: MACAddress) -> [UInt8]? {
        guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x06, Array(frame[22..<28]) == mac.bytes,
              frame[16] == 0x08, frame[17] == 0x00, frame[18] == 6, frame[19] == 4 else { return nil }
        let address = Array(frame[28..<32])
        return address.allSatisfy({ $0 == 0 }) ? nil : address
    }
}
