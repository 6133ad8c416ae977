public import Hypervisor
public import VMFSCore
import Synchronization

/// Appends the VM's console output to its `.log` file on the volume (and optionally passes it on).
///
/// The log never grows past its size limit, so a guest printing without end cannot fill the
/// datastore: when the next write would pass the limit, the log is cut to its newest half
/// (starting at a line), after a line saying how much older output was dropped.
public final class VolumeLogConsole: ConsoleSink {
    private let handle: FileHandle
    private let next: (any ConsoleSink)?
    private let sizeLimit: UInt64
    private let pending = Mutex<[UInt8]>([])

    /// - Parameters:
    ///   - handle: The `.log` file, open read-write.
    ///   - next: Another sink that also receives the output (for example standard output).
    ///   - sizeLimit: The most bytes the log may hold (at least 64 KiB).
    public init(handle: FileHandle, next: (any ConsoleSink)? = nil,
                sizeLimit: UInt64 = VirtualMachineDefinition.defaultLogSizeLimit) {
        self.handle = handle
        self.next = next
        self.sizeLimit = max(sizeLimit, VirtualMachineDefinition.logSizeLimits.lowerBound)
    }

    public func write(_ bytes: [UInt8]) {
        next?.write(bytes)
        let full = pending.withLock { buffer -> Bool in
            buffer += bytes
            return buffer.count >= 4096 || bytes.contains(0x0A)
        }
        if full { drain() }
    }

    private func drain() {
        let bytes = pending.withLock { buffer -> [UInt8] in
            defer { buffer.removeAll() }
            return buffer
        }
        guard !bytes.isEmpty else { return }
        let size = handle.size
        if size <= sizeLimit, UInt64(bytes.count) <= sizeLimit - size {
            try? handle.write(bytes: bytes, at: size)
        } else {
            try? cut(appending: bytes, currentSize: size)
        }
    }

    /// Rewrites the log as a marker line and the newest half of (log + `bytes`), from a line start.
    private func cut(appending bytes: [UInt8], currentSize: UInt64) throws(VMFSError) {
        let keep = Int(sizeLimit / 2)
        var tail: [UInt8]
        if bytes.count >= keep {
            tail = Array(bytes.suffix(keep))
        } else {
            let fromLog = UInt64(keep - bytes.count)
            let start = currentSize > fromLog ? currentSize - fromLog : 0
            tail = try handle.read(count: Int(currentSize - start), at: start) + bytes
        }
        if let newline = tail.firstIndex(of: 0x0A), newline + 1 < tail.count { tail.removeFirst(newline + 1) }
        let dropped = currentSize + UInt64(bytes.count) - UInt64(tail.count)
        let marker = Array("--- \(dropped) bytes of older console output dropped: this log is kept under \(sizeLimit) bytes (log.sizeLimit) ---\n".utf8)
        try handle.write(bytes: marker + tail, at: 0)
        try handle.truncate(to: UInt64(marker.count + tail.count))
    }

    public func flush() {
        next?.flush()
        drain()
        try? handle.sync()
    }
}
