internal import Crypto
internal import FoundationEssentials
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// The mutual authentication of one migration stream, done by the agents before they hand the
/// connected socket to their VMMs (`docs/MIGRATION.md`, "Stream handshake").
///
/// Both agents know the migration's one-time 32-byte session key (the source agent made it and
/// sent it to the destination agent over their TLS API). Each proves it with an HMAC-SHA256
/// over both sides' fresh nonces, and both derive the stream's two AES-256-GCM keys from it with
/// HKDF-SHA256; a replayed, forged or misdirected connection fails before any VM data flows.
public enum StreamHandshake {
    static let challengeMagic: [UInt8] = Array("VMMG".utf8)
    static let answerMagic: [UInt8] = Array("VMMS".utf8)
    static let version: UInt16 = 1
    static let challengeSize = 56
    static let answerSize = 72
    static let proofSize = 32

    /// A fresh random session key.
    public static func makeSessionKey() -> [UInt8] { randomBytes(32) }

    /// A fresh 16-byte migration identifier.
    public static func makeMigrationID() -> [UInt8] { randomBytes(16) }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = bytes.withUnsafeMutableBytes { cvmfs_random_bytes($0.baseAddress, $0.count) }
        return bytes
    }

    /// The destination's side, on an accepted connection: sends a challenge, checks the source's
    /// proof, proves itself.
    ///
    /// - Returns: The stream's index and this end's keys.
    /// - Throws: ``MigrationError/Code/authentication`` for a wrong proof; ``MigrationError/Code/connection``
    ///   or ``MigrationError/Code/timedOut`` when the peer goes away or stalls.
    public static func accept(socket: Int32, sessionKey: [UInt8], migrationID: [UInt8], streamCount: Int,
                              timeoutMilliseconds: Int32 = 5000) throws(MigrationError) -> (index: Int, keys: StreamKeys) {
        try checkInputs(sessionKey, migrationID)
        let destinationNonce = randomBytes(32)
        var challenge = challengeMagic
        challenge += [UInt8(truncatingIfNeeded: version), UInt8(truncatingIfNeeded: version >> 8), 0, 0]
        challenge += migrationID + destinationNonce
        try write(socket, challenge, timeoutMilliseconds)
        let answer = try read(socket, answerSize, timeoutMilliseconds)
        guard Array(answer[0..<4]) == answerMagic else {
            throw MigrationError(.authentication, "the connecting peer is not a migration source (bad magic)")
        }
        let index = Int(answer[4..<8].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard index < streamCount else {
            throw MigrationError(.authentication, "the connecting peer asks for stream \(index); the migration has \(streamCount)")
        }
        let sourceNonce = Array(answer[8..<40])
        let proof = Array(answer[40..<72])
        let key = SymmetricKey(data: sessionKey)
        let transcript = migrationID + littleEndian(UInt32(index)) + destinationNonce + sourceNonce
        guard HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: Array("vmfs-migration source".utf8) + transcript, using: key) else {
            throw MigrationError(.authentication, "stream \(index): the source's proof does not match the migration's key")
        }
        let mine = HMAC<SHA256>.authenticationCode(for: Array("vmfs-migration destination".utf8) + transcript, using: key)
        try write(socket, Array(mine), timeoutMilliseconds)
        let keys = derive(sessionKey: sessionKey, migrationID: migrationID, index: index,
                          destinationNonce: destinationNonce, sourceNonce: sourceNonce)
        return (index, keys.reversed)
    }

    /// The source's side, on a connected socket: answers the challenge, checks the destination's proof.
    ///
    /// - Returns: This end's keys.
    public static func connect(socket: Int32, sessionKey: [UInt8], migrationID: [UInt8], index: Int,
                               timeoutMilliseconds: Int32 = 5000) throws(MigrationError) -> StreamKeys {
        try checkInputs(sessionKey, migrationID)
        let challenge = try read(socket, challengeSize, timeoutMilliseconds)
        guard Array(challenge[0..<4]) == challengeMagic else {
            throw MigrationError(.authentication, "the destination did not answer as a migration destination (bad magic)")
        }
        let peerVersion = UInt16(challenge[4]) | UInt16(challenge[5]) << 8
        guard peerVersion == version else {
            throw MigrationError(.versionMismatch, "the destination's stream handshake is version \(peerVersion); this side speaks \(version)")
        }
        guard Array(challenge[8..<24]) == migrationID else {
            throw MigrationError(.authentication, "the destination's challenge names another migration")
        }
        let destinationNonce = Array(challenge[24..<56])
        let sourceNonce = randomBytes(32)
        let key = SymmetricKey(data: sessionKey)
        let transcript = migrationID + littleEndian(UInt32(index)) + destinationNonce + sourceNonce
        let proof = HMAC<SHA256>.authenticationCode(for: Array("vmfs-migration source".utf8) + transcript, using: key)
        try write(socket, answerMagic + littleEndian(UInt32(index)) + sourceNonce + Array(proof), timeoutMilliseconds)
        let theirs = try read(socket, proofSize, timeoutMilliseconds)
        guard HMAC<SHA256>.isValidAuthenticationCode(theirs, authenticating: Array("vmfs-migration destination".utf8) + transcript, using: key) else {
            throw MigrationError(.authentication, "stream \(index): the destination's proof does not match the migration's key")
        }
        return derive(sessionKey: sessionKey, migrationID: migrationID, index: index, destinationNonce: destinationNonce,
                      sourceNonce: sourceNonce)
    }

    /// The source's keys: `send` = source → destination, `receive` = destination → source.
    static func derive(sessionKey: [UInt8], migrationID: [UInt8], index: Int, destinationNonce: [UInt8], sourceNonce: [UInt8]) -> StreamKeys {
        let material = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: sessionKey), salt: destinationNonce + sourceNonce,
                                              info: Array("vmfs-migration keys".utf8) + migrationID + littleEndian(UInt32(index)),
                                              outputByteCount: 64)
        let bytes = material.withUnsafeBytes { Array($0) }
        return StreamKeys(send: Array(bytes[0..<32]), receive: Array(bytes[32..<64]))
    }

    private static func checkInputs(_ sessionKey: [UInt8], _ migrationID: [UInt8]) throws(MigrationError) {
        guard sessionKey.count == 32, migrationID.count == 16 else {
            throw MigrationError(.malformed, "a session key is 32 bytes and a migration ID 16")
        }
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) } }

    private static func write(_ socket: Int32, _ bytes: [UInt8], _ timeout: Int32) throws(MigrationError) {
        var offset = 0
        while offset < bytes.count {
            var poller = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, timeout)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw MigrationError(.timedOut, "the stream handshake stalled") }
            let n = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError(.connection, "the stream handshake failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    private static func read(_ socket: Int32, _ count: Int, _ timeout: Int32) throws(MigrationError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, timeout)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw MigrationError(.timedOut, "the stream handshake stalled") }
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress! + offset, count - offset, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw MigrationError(.connection, "the stream handshake failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw MigrationError(.connection, "the peer closed the connection during the handshake") }
            offset += n
        }
        return buffer
    }
}
