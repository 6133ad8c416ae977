public import Hypervisor
public import VMFSCore
import Synchronization

/// Appends the VM's console output to its `.log` file on the volume (and optionally passes it on).
public final class VolumeLogConsole: ConsoleSink {
    private let handle: FileHandle
    private let next: (any ConsoleSink)?
    private let pending = Mutex<[UInt8]>([])

    /// - Parameters:
    ///   - handle: The `.log` file, open read-write.
    ///   - next: Another sink that also receives the output (for example standard output).
    public init(handle: FileHandle, next: (any ConsoleSink)? = nil) {
        self.handle = handle
        self.next = next
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
        try? handle.write(bytes: bytes, at: handle.size)
    }

    public func flush() {
        next?.flush()
        drain()
        try? handle.sync()
    }
}
