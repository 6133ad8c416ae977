internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif
internal import CVMFSLinux

/// Where the guest's serial console output goes (a terminal, the VM's `.log` file, a test buffer).
///
/// The UART hands over output in chunks (usually one line); calls may come from any vCPU thread
/// but never concurrently for one UART.
public protocol ConsoleSink: Sendable {
    /// Receives bytes the guest wrote to the serial port.
    func write(_ bytes: [UInt8])
    /// Makes previously written bytes durable or visible; called when the VM powers off.
    func flush()
}

extension ConsoleSink {
    public func flush() {}
}

/// Writes console output to the VMM process's standard output.
public struct StandardOutputConsole: ConsoleSink {
    public init() {}

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(STDOUT_FILENO, base + offset, buffer.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}

/// Discards console output.
public struct DiscardingConsole: ConsoleSink {
    public init() {}
    public func write(_ bytes: [UInt8]) {}
}

/// Appends console output to a file (for example the VM's `.log`), creating it if needed.
public final class FileConsole: ConsoleSink {
    private let descriptor: OwnedFileDescriptor
    /// The file's path.
    public let path: String

    /// Opens `path` for appending.
    ///
    /// - Parameter truncate: Empties the file first instead of appending.
    /// - Throws: ``HypervisorError/Code/systemCall`` if the file cannot be opened.
    public init(path: String, truncate: Bool = false) throws(HypervisorError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { throw .systemCall("open console log \(path)") }
        self.descriptor = OwnedFileDescriptor(fd)
        self.path = path
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor.rawValue, base + offset, buffer.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    public func flush() { _ = fdatasync(descriptor.rawValue) }
}

/// Sends console output to several sinks (for example stdout and a log file).
public struct TeeConsole: ConsoleSink {
    private let sinks: [any ConsoleSink]

    public init(_ sinks: [any ConsoleSink]) { self.sinks = sinks }

    public func write(_ bytes: [UInt8]) { sinks.forEach { $0.write(bytes) } }
    public func flush() { sinks.forEach { $0.flush() } }
}

/// Keeps console output in memory; tests read it and wait for expected text.
public final class CapturingConsole: ConsoleSink {
    private let buffer = Mutex<[UInt8]>([])

    public init() {}

    public func write(_ bytes: [UInt8]) { buffer.withLock { $0.append(contentsOf: bytes) } }

    /// Everything written so far, decoded as UTF-8 (invalid bytes replaced).
    public var text: String { String(decoding: buffer.withLock { $0 }, as: UTF8.self) }

    /// The lines written so far (without terminators; "\n" and "\r\n" both end a line).
    public var lines: [String] {
        text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
    }

    /// Waits until `predicate` holds for the captured text or `timeout` seconds pass.
    ///
    /// - Returns: Whether the predicate became true.
    public func wait(timeout: Double, until predicate: (String) -> Bool) -> Bool {
        let deadline = cvmfs_monotonic_ns() + UInt64(timeout * 1e9)
        while true {
            if predicate(text) { return true }
            if cvmfs_monotonic_ns() >= deadline { return false }
            usleep(20_000)
        }
    }
}
