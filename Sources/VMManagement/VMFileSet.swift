public import VMFSCore

/// The files of one VM on a volume, opened for running it: its `.vmx` (exclusive, so it runs once
/// in the cluster), each disk's extent (read-write), its `.log`, and its definition.
///
/// Opening takes the cluster locks for `client`, so on this host no other client can write them
/// either. ``close()`` releases everything; a failed open releases what it had taken.
public final class VMFileSet: Sendable {
    /// One disk: its descriptor and its open extent.
    public struct Disk: Sendable {
        public let descriptorName: String
        public let descriptor: VMDKDescriptor
        public let extent: FileHandle
    }

    public let definition: VirtualMachineDefinition
    public let vmx: FileHandle
    public let disks: [Disk]
    public let log: FileHandle
    public let volume: Volume

    private init(definition: VirtualMachineDefinition, vmx: FileHandle, disks: [Disk], log: FileHandle, volume: Volume) {
        self.definition = definition
        self.vmx = vmx
        self.disks = disks
        self.log = log
        self.volume = volume
    }

    /// Opens VM `name`'s files for running.
    ///
    /// - Throws: ``VMError/Code/busy`` naming the host or client that has a file (its cause is the
    ///   volume's error), ``VMError/Code/notFound``, ``VMError/Code/malformedConfiguration``.
    public static func open(volume: Volume, name: String, client: FileClient) throws(VMError) -> VMFileSet {
        let vmxName = "\(name).vmx"
        var handles: [FileHandle] = []
        func take(_ file: String, _ access: FileAccess, _ what: String) throws(VMError) -> FileHandle {
            do {
                let handle = try volume.open(file, access: access, client: client)
                handles.append(handle)
                return handle
            } catch {
                let code: VMError.Code = switch error.code {
                case .busy: .busy
                case .notFound: .notFound
                default: .storage
                }
                throw VMError(code, "\(what) of VM '\(name)': \(error.message)", cause: error)
            }
        }
        do throws(VMError) {
            let vmx = try take(vmxName, .readWrite, "configuration '\(vmxName)'")
            let definition = try VirtualMachineDefinition(vmx: VMXFile(parsing: readText(vmx, name: vmxName), fileName: vmxName),
                                                          fileName: vmxName)
            var disks: [Disk] = []
            for disk in definition.disks {
                let text = try readText(try take(disk, .readOnly, "disk descriptor '\(disk)'"), name: disk)
                let descriptor = try VMDKDescriptor(parsing: text, fileName: disk)
                let extent = try take(descriptor.extentFileName, .readWrite, "disk '\(descriptor.extentFileName)'")
                guard extent.size >= descriptor.byteCount else {
                    throw VMError(.storage, "disk '\(descriptor.extentFileName)' is \(extent.size) bytes; '\(disk)' says \(descriptor.byteCount)")
                }
                disks.append(Disk(descriptorName: disk, descriptor: descriptor, extent: extent))
            }
            let log = try take("\(name).log", .readWrite, "log '\(name).log'")
            // Descriptor handles were only needed for reading.
            for handle in handles where handle.access == .readOnly { try? handle.close() }
            return VMFileSet(definition: definition, vmx: vmx, disks: disks, log: log, volume: volume)
        } catch {
            for handle in handles.reversed() { try? handle.close() }
            throw error
        }
    }

    /// Reads a small text file (a `.vmx` or descriptor, at most 1 MiB).
    static func readText(_ handle: FileHandle, name: String) throws(VMError) -> String {
        guard handle.size <= 1 << 20 else { throw VMError(.malformedConfiguration, "'\(name)' is \(handle.size) bytes; at most 1 MiB is read") }
        do {
            return String(decoding: try handle.read(count: Int(handle.size), at: 0), as: UTF8.self)
        } catch {
            throw VMError(.storage, "reading '\(name)': \(error.message)", cause: error)
        }
    }

    /// Releases every lock (closes every handle), last opened first.
    public func close() {
        try? log.close()
        for disk in disks.reversed() { try? disk.extent.close() }
        try? vmx.close()
    }
}
