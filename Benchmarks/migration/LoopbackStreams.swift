import LiveMigration
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// Migration streams over TCP on the loopback interface, authenticated with the agents' stream
/// handshake (a fresh session key per migration), as two agents would connect them.
enum LoopbackStreams {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `count` connected stream pairs (source end, destination end), in stream order.
    static func make(_ count: Int, stallMilliseconds: Int32 = 5000) throws -> (source: [MigrationStream], destination: [MigrationStream]) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 16) == 0
                && getsockname(listener, $0, &length) == 0 }
        }
        guard bound else { throw Failure(description: "bind/listen on 127.0.0.1: errno \(errno)") }
        let sessionKey = StreamHandshake.makeSessionKey()
        let migrationID = StreamHandshake.makeMigrationID()
        var sources: [MigrationStream] = []
        var destinations: [MigrationStream?] = Array(repeating: nil, count: count)
        for index in 0..<count {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard client >= 0, connected else { throw Failure(description: "connect to the loopback listener: errno \(errno)") }
            let server = accept(listener, nil, nil)
            guard server >= 0 else { throw Failure(description: "accept: errno \(errno)") }
            // The destination's challenge fits the socket buffer, so one thread can run both sides in turn.
            let accepted = Box<(Int, StreamKeys)?>(nil)
            let acceptor = try NativeThread(name: "bench-accept") {
                accepted.value = try? StreamHandshake.accept(socket: server, sessionKey: sessionKey, migrationID: migrationID, streamCount: count)
            }
            let keys = try StreamHandshake.connect(socket: client, sessionKey: sessionKey, migrationID: migrationID, index: index)
            acceptor.join()
            guard let (acceptedIndex, destinationKeys) = accepted.value else { throw Failure(description: "stream \(index): handshake refused") }
            sources.append(try MigrationStream(socket: OwnedDescriptor(client), keys: keys, index: index, stallTimeoutMilliseconds: stallMilliseconds))
            destinations[acceptedIndex] = try MigrationStream(socket: OwnedDescriptor(server), keys: destinationKeys, index: acceptedIndex,
                                                              stallTimeoutMilliseconds: stallMilliseconds)
        }
        return (sources, destinations.compactMap { $0 })
    }
}

/// A value one thread sets and another reads after joining it.
final class Box<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
