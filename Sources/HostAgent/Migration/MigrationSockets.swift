public import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

/// The TCP sockets of a migration's streams: the destination agent listens, the source agent
/// connects; both then run the stream handshake and hand the sockets to their VMMs.
enum MigrationSockets {
    /// A listening IPv4 socket on `address` (port chosen by the kernel) and its port.
    static func listen(address: String, backlog: Int32 = 16) throws(AgentError) -> (socket: OwnedDescriptor, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw AgentError(.failed, "cannot create the migration listener: errno \(errno)") }
        let listener = OwnedDescriptor(fd)
        var enable: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = try Self.address(address, port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && Glibc.listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw AgentError(.failed, "cannot listen for migration streams on \(address): errno \(errno)") }
        return (listener, Int(UInt16(bigEndian: socketAddress.sin_port)))
    }

    /// The next connection on `listener`, or nil when none came before `deadline` (monotonic ns).
    static func accept(_ listener: OwnedDescriptor, deadline: UInt64) -> OwnedDescriptor? {
        while true {
            let now = MonotonicClock.nanoseconds
            guard now < deadline else { return nil }
            var poller = pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min((deadline - now) / 1_000_000 + 1, 1000)))
            if ready <= 0 { continue }
            let fd = Glibc.accept(listener.rawValue, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                return OwnedDescriptor(fd)
            }
        }
    }

    /// A connection to `address`:`port`, within `timeoutMilliseconds`.
    static func connect(address: String, port: Int, timeoutMilliseconds: Int32) throws(AgentError) -> OwnedDescriptor {
        guard (1...65535).contains(port) else { throw AgentError(.invalidArgument, "port \(port) is not a TCP port") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw AgentError(.failed, "cannot create a migration stream socket: errno \(errno)") }
        let connection = OwnedDescriptor(fd)
        var socketAddress = try Self.address(address, port: port)
        let started = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started != 0 {
            guard errno == EINPROGRESS else {
                throw AgentError(.failed, "cannot connect to the destination \(address):\(port): \(String(cString: strerror(errno)))")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&poller, 1, timeoutMilliseconds) == 1 else {
                throw AgentError(.failed, "the destination \(address):\(port) did not accept a migration stream within \(timeoutMilliseconds) ms")
            }
            var failure: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &size)
            guard failure == 0 else {
                throw AgentError(.failed, "cannot connect to the destination \(address):\(port): \(String(cString: strerror(failure)))")
            }
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~Int32(O_NONBLOCK))
        return connection
    }

    private static func address(_ text: String, port: Int) throws(AgentError) -> sockaddr_in {
        var result = sockaddr_in()
        result.sin_family = sa_family_t(AF_INET)
        result.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, text, &result.sin_addr) == 1 else {
            throw AgentError(.invalidArgument, "'\(text)' is not an IPv4 address", field: "address")
        }
        return result
    }
}
