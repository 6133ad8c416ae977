public import SystemSupport
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A `SOCK_SEQPACKET` socket carrying fixed-size records (a disk channel end).
public final class RecordSocket: Sendable {
    public let socket: OwnedDescriptor

    public init(socket: OwnedDescriptor) { self.socket = socket }

    /// A connected pair (agent end, VMM end).
    public static func pair() throws(SystemError) -> (RecordSocket, RecordSocket) {
        var fds: [Int32] = [-1, -1]
        let result = fds.withUnsafeMutableBufferPointer { cvmfs_seqpacket_pair($0.baseAddress) }
        guard result == 0 else { throw SystemError("socketpair(SOCK_SEQPACKET)", errno: -result) }
        return (RecordSocket(socket: OwnedDescriptor(fds[0])), RecordSocket(socket: OwnedDescriptor(fds[1])))
    }

    /// Sends one record. Throws when the peer is gone.
    public func send(_ record: [UInt8]) throws(SystemError) {
        let result = record.withUnsafeBytes { cvmfs_send_with_fds(socket.rawValue, $0.baseAddress, $0.count, nil, 0) }
        if result < 0 { throw SystemError("sendmsg", errno: Int32(-result), subject: "disk channel") }
    }

    /// Receives one record of at most `maximum` bytes; nil at end of stream. A longer record is
    /// returned truncated to `maximum + 1` bytes so that its size check fails.
    public func receive(maximum: Int) throws(SystemError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum + 1)
        var fdCount: Int32 = 0
        var truncated: Int32 = 0
        var descriptor: Int32 = -1
        let capacity = buffer.count
        let received = buffer.withUnsafeMutableBytes { raw in
            cvmfs_receive_with_fds(socket.rawValue, raw.baseAddress, capacity, &descriptor, 1, &fdCount, &truncated)
        }
        if fdCount > 0 { close(descriptor) }  // records never carry descriptors
        if received < 0 {
            if -received == Int(ECONNRESET) { return nil }
            throw SystemError("recvmsg", errno: Int32(-received), subject: "disk channel")
        }
        if received == 0 { return nil }
        return Array(buffer[0..<received])
    }

    /// Makes a blocked ``receive(maximum:)`` on the other end (or here) return end of stream.
    public func shutdown() { _ = Glibc.shutdown(socket.rawValue, Int32(SHUT_RDWR)) }
}
