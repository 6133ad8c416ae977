public import SystemSupport
internal import Crypto
internal import FoundationEssentials
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// The two keys of one stream, derived by the agents' handshake (``StreamHandshake``): one per
/// direction, so a nonce is never used twice under one key.
public struct StreamKeys: Sendable, Equatable {
    /// AES-256-GCM key of what this end sends.
    public var send: [UInt8]
    /// AES-256-GCM key of what this end receives.
    public var receive: [UInt8]

    public init(send: [UInt8], receive: [UInt8]) {
        self.send = send
        self.receive = receive
    }

    /// The keys of the other end.
    public var reversed: StreamKeys { StreamKeys(send: receive, receive: send) }
}

/// One authenticated, encrypted TCP stream between two VMMs (`docs/MIGRATION.md`, "Records").
///
/// Every record is `u32 length` + AES-256-GCM(plaintext message) + 16-byte tag; the nonce is
/// the record's number in its direction (so records cannot be replayed, dropped or reordered
/// without the next one failing), the length is authenticated as associated data. Sends are
/// serialized; one thread receives. A send or receive that makes no progress for the stall
/// timeout fails: a cut link is noticed without TCP's own timeouts.
public final class MigrationStream: Sendable {
    /// Largest sealed record (a message of 4 MiB plus its tag).
    public static let maximumRecord = 4 << 20
    static let tagSize = 16

    public let index: Int
    private let socket: OwnedDescriptor
    private let sendKeyBytes: [UInt8]
    private let receiveKeyBytes: [UInt8]
    private let sendCounter = Mutex<UInt64>(0)
    private let receiveCounter = Mutex<UInt64>(0)
    private let sent = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    /// Milliseconds without progress after which a send or receive fails.
    public let stallTimeoutMilliseconds: Int32

    /// Wraps a connected TCP socket.
    ///
    /// - Throws: ``MigrationError/Code/malformed`` when a key is not 32 bytes.
    public init(socket: OwnedDescriptor, keys: StreamKeys, index: Int, stallTimeoutMilliseconds: Int32 = 5000) throws(MigrationError) {
        guard keys.send.count == 32, keys.receive.count == 32 else {
            throw MigrationError(.malformed, "stream \(index): keys must be 32 bytes")
        }
        self.socket = socket
        self.index = index
        sendKeyBytes = keys.send
        receiveKeyBytes = keys.receive
        self.stallTimeoutMilliseconds = stallTimeoutMilliseconds
        var enable: Int32 = 1
        _ = setsockopt(socket.rawValue, Int32(IPPROTO_TCP), TCP_NODELAY, &enable, socklen_t(MemoryLayout<Int32>.size))
        var buffer: Int32 = 4 << 20
        _ = setsockopt(socket.rawValue, SOL_SOCKET, SO_SNDBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(socket.rawValue, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Bytes put on the wire so far (records with their framing).
    public var bytesSent: UInt64 { sent.load(ordering: .relaxed) }

    private static func nonce(_ counter: UInt64) -> AES.GCM.Nonce? {
        var bytes = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { bytes[4 + i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(i))) }
        return try? AES.GCM.Nonce(data: bytes)
    }

    /// Sends one message.
    public func send(_ message: MigrationMessage) throws(MigrationError) {
        try send(plaintext: message.encoded())
    }

    /// Sends an encoded message (see ``MigrationMessage/encoded()``).
    func send(plaintext: [UInt8]) throws(MigrationError) {
        let sealedLength = plaintext.count + Self.tagSize
        guard sealedLength <= Self.maximumRecord else {
            throw MigrationError(.malformed, "stream \(index): a \(plaintext.count)-byte message exceeds the record limit")
        }
        var lengthBytes = [UInt8](repeating: 0, count: 4)
        for i in 0..<4 { lengthBytes[i] = UInt8(truncatingIfNeeded: UInt32(sealedLength) >> (8 * UInt32(i))) }
        try sendCounter.withLock { (counter) throws(MigrationError) in
            guard let nonce = Self.nonce(counter) else { throw MigrationError(.malformed, "stream \(index): nonce") }
            let box: AES.GCM.SealedBox
            do {
                box = try AES.GCM.seal(plaintext, using: SymmetricKey(data: sendKeyBytes), nonce: nonce, authenticating: lengthBytes)
            } catch {
                throw MigrationError(.authentication, "stream \(index): sealing a record failed: \(error)")
            }
            counter &+= 1
            var record = lengthBytes
            record.reserveCapacity(4 + sealedLength)
            record.append(contentsOf: box.ciphertext)
            record.append(contentsOf: box.tag)
            try writeAll(record)
        }
        sent.add(UInt64(4 + sealedLength), ordering: .relaxed)
    }

    /// Receives one message; nil when the peer closed the stream cleanly between records.
    ///
    /// - Parameter timeoutMilliseconds: How long to wait for a record to start (nil: forever);
    ///   once it has started, the stall timeout applies.
    public func receive(timeoutMilliseconds: Int32? = nil) throws(MigrationError) -> MigrationMessage? {
        guard let plaintext = try receivePlaintext(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return try MigrationMessage.decode(plaintext[...], stream: index)
    }

    func receivePlaintext(timeoutMilliseconds: Int32?) throws(MigrationError) -> [UInt8]? {
        guard let lengthBytes = try readExactly(4, startTimeout: timeoutMilliseconds ?? -1) else { return nil }
        let length = lengthBytes.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard length >= Self.tagSize, length <= Self.maximumRecord else {
            throw MigrationError(.malformed, "stream \(index): record length \(length) is outside \(Self.tagSize)…\(Self.maximumRecord)")
        }
        guard let sealed = try readExactly(length, startTimeout: stallTimeoutMilliseconds) else {
            throw MigrationError(.connection, "stream \(index): the peer closed it in the middle of a record")
        }
        return try receiveCounter.withLock { (counter) throws(MigrationError) -> [UInt8] in
            guard let nonce = Self.nonce(counter) else { throw MigrationError(.malformed, "stream \(index): nonce") }
            do {
                let box = try AES.GCM.SealedBox(nonce: nonce, ciphertext: sealed[0..<(length - Self.tagSize)],
                                                tag: sealed[(length - Self.tagSize)...])
                let plain = try AES.GCM.open(box, using: SymmetricKey(data: receiveKeyBytes), authenticating: lengthBytes)
                counter &+= 1
                return [UInt8](plain)
            } catch {
                throw MigrationError(.authentication, "stream \(index): record \(counter) failed authentication (not from the peer that shook hands, or altered)")
            }
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws(MigrationError) {
        var offset = 0
        while offset < bytes.count {
            guard !closed.load(ordering: .acquiring) else { throw MigrationError(.connection, "stream \(index) is closed") }
            let ready = cvmfsPoll(POLLOUT, stallTimeoutMilliseconds)
            guard ready > 0 else {
                throw MigrationError(ready == 0 ? .timedOut : .connection,
                                     ready == 0 ? "stream \(index): nothing could be sent for \(stallTimeoutMilliseconds) ms (link down or peer stalled)"
                                                : "stream \(index): poll failed (errno \(-ready))")
            }
            let n = bytes.withUnsafeBytes { raw in Glibc.send(socket.rawValue, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError(.connection, "stream \(index): send failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Reads `count` bytes; nil when the stream ends before the first byte.
    private func readExactly(_ count: Int, startTimeout: Int32) throws(MigrationError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let timeout = offset == 0 ? startTimeout : stallTimeoutMilliseconds
            let ready = cvmfsPoll(POLLIN, timeout)
            guard ready > 0 else {
                if ready == 0 {
                    throw MigrationError(.timedOut, "stream \(index): nothing arrived for \(timeout) ms (link down or peer stalled)")
                }
                throw MigrationError(.connection, "stream \(index): poll failed (errno \(-ready))")
            }
            let n = buffer.withUnsafeMutableBytes { raw in Glibc.recv(socket.rawValue, raw.baseAddress! + offset, count - offset, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError(.connection, "stream \(index): receive failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                if offset == 0 { return nil }
                throw MigrationError(.connection, "stream \(index): the peer closed it in the middle of a record")
            }
            offset += n
        }
        return buffer
    }

    private func cvmfsPoll(_ events: Int32, _ timeout: Int32) -> Int32 {
        var poller = pollfd(fd: socket.rawValue, events: Int16(events), revents: 0)
        while true {
            let result = poll(&poller, 1, timeout)
            if result < 0 && errno == EINTR { continue }
            if result < 0 { return -errno }
            if result > 0 && poller.revents & Int16(events) == 0 && poller.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                // Let the read or write itself report end of stream or the error.
                return 1
            }
            return result
        }
    }

    /// Ends the stream both ways: a blocked send or receive here or at the peer returns.
    public func shutdown() {
        closed.store(true, ordering: .releasing)
        _ = Glibc.shutdown(socket.rawValue, Int32(SHUT_RDWR))
    }
}
