public import SystemSupport
internal import CVMFSLinux
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A message received with the descriptors that came with it (owned by the receiver now).
public struct ReceivedMessage: Sendable {
    public var message: ControlMessage
    public var descriptors: [OwnedDescriptor]
}

/// One end of a control connection: a `SOCK_SEQPACKET` Unix socket, one frame per message.
///
/// Sends are serialized (any thread may send); one thread receives. Every received frame is
/// checked before anything in it is used (`ControlFrameHeader.decode`), and descriptors that
/// arrive with a bad frame are closed.
public final class ControlChannel: Sendable {
    public let socket: OwnedDescriptor
    private let sending = Mutex(())

    public init(socket: OwnedDescriptor) { self.socket = socket }

    /// Connects to a VMM listening at `path`.
    public static func connect(path: String) throws(VMXProtocolError) -> ControlChannel {
        let fd = cvmfs_seqpacket_connect(path)
        guard fd >= 0 else {
            throw VMXProtocolError(.system, "cannot connect to \(path)", cause: SystemError("connect", errno: -fd, subject: path))
        }
        return ControlChannel(socket: OwnedDescriptor(fd))
    }

    /// The credentials of the process at the other end.
    public func peer() throws(VMXProtocolError) -> (pid: Int32, uid: UInt32) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        let result = cvmfs_peer_credentials(socket.rawValue, &pid, &uid, &gid)
        guard result == 0 else {
            throw VMXProtocolError(.system, "cannot read peer credentials", cause: SystemError("getsockopt(SO_PEERCRED)", errno: -result))
        }
        return (pid, uid)
    }

    /// Sends `message` with `descriptors` (which stay open and owned by the caller).
    public func send(_ message: ControlMessage, descriptors: [Int32] = []) throws(VMXProtocolError) {
        let payload = try message.payload()
        guard payload.count <= VMXProtocol.maximumPayload else {
            throw VMXProtocolError(.malformed, "message type 0x\(String(message.type, radix: 16)) has \(payload.count) payload bytes; at most \(VMXProtocol.maximumPayload)")
        }
        guard descriptors.count <= VMXProtocol.maximumDescriptors else {
            throw VMXProtocolError(.malformed, "\(descriptors.count) descriptors in one message; at most \(VMXProtocol.maximumDescriptors)")
        }
        let frame = ControlFrameHeader(type: message.type, payloadLength: UInt32(payload.count),
                                       descriptorCount: UInt32(descriptors.count)).encoded + payload
        let result = sending.withLock { _ in
            frame.withUnsafeBytes { raw in
                descriptors.withUnsafeBufferPointer { fds in
                    cvmfs_send_with_fds(socket.rawValue, raw.baseAddress, raw.count, fds.baseAddress, Int32(fds.count))
                }
            }
        }
        if result < 0 {
            let code = Int32(-result)
            if code == EBADF && !descriptors.isEmpty {
                // sendmsg fails so when a descriptor to pass is not open (the channel's own is).
                throw VMXProtocolError(.system, "cannot pass \(descriptors.count) descriptors with message 0x\(String(message.type, radix: 16)): "
                                       + "one of them is not open", cause: SystemError("sendmsg", errno: code))
            }
            if code == EPIPE || code == ECONNRESET || code == ENOTCONN || code == EBADF {
                throw VMXProtocolError(.closed, "the peer closed the control connection", cause: SystemError("sendmsg", errno: code))
            }
            throw VMXProtocolError(.system, "cannot send a control message", cause: SystemError("sendmsg", errno: code))
        }
    }

    /// Receives one message, waiting up to `timeoutMilliseconds` (nil: forever).
    ///
    /// - Returns: nil when the peer closed the connection.
    /// - Throws: ``VMXProtocolError`` for a malformed frame (its descriptors are closed) or a
    ///   timeout.
    public func receive(timeoutMilliseconds: Int32? = nil) throws(VMXProtocolError) -> ReceivedMessage? {
        if let timeoutMilliseconds {
            let ready = cvmfs_poll_one(socket.rawValue, Int16(POLLIN), timeoutMilliseconds)
            if ready < 0 { throw VMXProtocolError(.system, "poll on the control connection", cause: SystemError("poll", errno: -ready)) }
            if ready == 0 { throw VMXProtocolError(.timedOut, "no control message within \(timeoutMilliseconds) ms") }
        }
        var buffer = [UInt8](repeating: 0, count: VMXProtocol.headerSize + VMXProtocol.maximumPayload + 1)
        var fds = [Int32](repeating: -1, count: VMXProtocol.maximumDescriptors)
        var fdCount: Int32 = 0
        var truncated: Int32 = 0
        let capacity = buffer.count
        // A reset reported before the frames the peer sent before closing is read past in
        // cvmfs_receive_with_fds, once; a reset seen here is the end of the stream.
        let received = buffer.withUnsafeMutableBytes { raw in
            fds.withUnsafeMutableBufferPointer { fdBuffer in
                cvmfs_receive_with_fds(socket.rawValue, raw.baseAddress, capacity, fdBuffer.baseAddress,
                                       Int32(VMXProtocol.maximumDescriptors), &fdCount, &truncated)
            }
        }
        let descriptors = fds.prefix(Int(max(0, fdCount))).map(OwnedDescriptor.init)
        if received < 0 {
            let code = Int32(-received)
            if code == ECONNRESET { return nil }
            throw VMXProtocolError(.system, "cannot receive a control message", cause: SystemError("recvmsg", errno: code))
        }
        if received == 0 { return nil }
        guard truncated == 0, received < capacity else {
            throw VMXProtocolError(.malformed, "control frame larger than \(VMXProtocol.headerSize + VMXProtocol.maximumPayload) bytes or with too many descriptors")
        }
        let frame = buffer[0..<received]
        let header = try ControlFrameHeader.decode(frame)
        guard Int(header.descriptorCount) == descriptors.count else {
            throw VMXProtocolError(.malformed, "control frame announces \(header.descriptorCount) descriptors but carries \(descriptors.count)")
        }
        let message = try ControlMessage.decode(type: header.type, payload: frame.dropFirst(VMXProtocol.headerSize))
        return ReceivedMessage(message: message, descriptors: descriptors)
    }
}
