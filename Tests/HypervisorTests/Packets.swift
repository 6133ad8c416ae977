import Foundation
@testable import Hypervisor

/// Hand-built Ethernet, ARP, IPv4, ICMP and UDP frames for talking to the test guest's network kit,
/// and their decoding.
enum Packets {
    static func ipv4(_ text: String) -> UInt32 {
        text.split(separator: ".").reduce(UInt32(0)) { $0 << 8 | UInt32($1)! }
    }

    static func bytes(_ address: UInt32) -> [UInt8] { [UInt8(address >> 24), UInt8(address >> 16 & 255), UInt8(address >> 8 & 255), UInt8(address & 255)] }

    static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 255), UInt8(value & 255)] }

    static func checksum(_ data: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < data.count {
            sum += UInt32(data[index]) << 8 | UInt32(data[index + 1])
            index += 2
        }
        if data.count % 2 == 1 { sum += UInt32(data[data.count - 1]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    static func arp(operation: Int, from mac: MACAddress, ip: UInt32, to target: MACAddress, targetIP: UInt32) -> [UInt8] {
        let destination = operation == 1 ? MACAddress.broadcast : target
        return destination.bytes + mac.bytes + [0x08, 0x06] + [0, 1, 8, 0, 6, 4] + be16(operation) + mac.bytes + bytes(ip)
            + (operation == 1 ? [0, 0, 0, 0, 0, 0] : target.bytes) + bytes(targetIP) + [UInt8](repeating: 0, count: 18)
    }

    static func ip(from source: MACAddress, _ sourceIP: UInt32, to destination: MACAddress, _ destinationIP: UInt32,
                   protocol kind: UInt8, payload: [UInt8]) -> [UInt8] {
        var header: [UInt8] = [0x45, 0] + be16(20 + payload.count) + [0, 0, 0x40, 0, 64, kind, 0, 0] + bytes(sourceIP) + bytes(destinationIP)
        let sum = checksum(header)
        header[10] = UInt8(sum >> 8)
        header[11] = UInt8(sum & 255)
        return destination.bytes + source.bytes + [0x08, 0x00] + header + payload
    }

    static func icmpEcho(identifier: Int, sequence: Int, data: [UInt8]) -> [UInt8] {
        var message: [UInt8] = [8, 0, 0, 0] + be16(identifier) + be16(sequence) + data
        let sum = checksum(message)
        message[2] = UInt8(sum >> 8)
        message[3] = UInt8(sum & 255)
        return message
    }

    static func udp(sourcePort: Int, port: Int, payload: [UInt8]) -> [UInt8] {
        be16(sourcePort) + be16(port) + be16(8 + payload.count) + [0, 0] + payload
    }

    /// The fields of a received IPv4 frame: protocol, addresses and payload (nil for anything else).
    struct IPv4: Equatable {
        var source: MACAddress
        var destination: MACAddress
        var kind: UInt8
        var sourceIP: UInt32
        var destinationIP: UInt32
        var payload: [UInt8]
        var headerChecksumValid: Bool
    }

    static func parseIPv4(_ frame: [UInt8]) -> IPv4? {
        guard frame.count >= 34, frame[12] == 0x08, frame[13] == 0x00, frame[14] >> 4 == 4 else { return nil }
        let length = Int(frame[16]) << 8 | Int(frame[17])
        guard 14 + length <= frame.count, length >= 20 else { return nil }
        let header = Array(frame[14..<34])
        func address(_ at: Int) -> UInt32 { frame[at..<(at + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        return IPv4(source: MACAddress(bytes: frame[6..<12])!, destination: MACAddress(bytes: frame[0..<6])!, kind: frame[23],
                    sourceIP: address(26), destinationIP: address(30), payload: Array(frame[34..<(14 + length)]),
                    headerChecksumValid: checksum(header) == 0)
    }
}
