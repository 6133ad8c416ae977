import FoundationEssentials
import Glibc
public import Hypervisor
public import VMFSCore

/// VMs as files on a VMFS volume: `NAME.vmx`, `NAME.vmdk` + `NAME-flat.vmdk` per disk,
/// `NAME.log`, and the boot image(s).
///
/// A running VM holds the exclusive locks of its `.vmx`, its disks and its log, so no other
/// host (and no second process here) can run it at the same time: that is what makes HA
/// restart and live migration safe later.
public final class VirtualMachineStore: Sendable {
    public let volume: Volume

    public init(volume: Volume) { self.volume = volume }

    /// How to boot a VM being created, from files on this host.
    public enum BootImages: Sendable {
        case linux(kernelPath: String, initrdPath: String?, commandLine: String)
        case testGuest(imagePath: String, workload: TestGuestWorkload, arguments: [UInt64])
    }

    /// What to create.
    public struct CreateRequest: Sendable {
        public var name: String
        public var vcpuCount: Int
        public var memoryBytes: UInt64
        public var diskSizes: [UInt64]
        /// Preallocate disks (lazily zeroed thick) instead of thin.
        public var thick: Bool
        public var boot: BootImages
        /// The size the console log may reach (`log.sizeLimit`).
        public var logSizeLimit: UInt64
        /// The port group of each NIC (addresses are generated).
        public var networks: [String]

        public init(name: String, vcpuCount: Int, memoryBytes: UInt64, diskSizes: [UInt64], thick: Bool = false, boot: BootImages,
                    logSizeLimit: UInt64 = VirtualMachineDefinition.defaultLogSizeLimit, networks: [String] = []) {
            self.name = name
            self.vcpuCount = vcpuCount
            self.memoryBytes = memoryBytes
            self.diskSizes = diskSizes
            self.thick = thick
            self.boot = boot
            self.logSizeLimit = logSizeLimit
            self.networks = networks
        }
    }

    /// A VM as listed.
    public struct Summary: Sendable, Codable, Equatable {
        public var name: String
        public var vcpuCount: Int
        public var memoryBytes: UInt64
        public var diskBytes: [UInt64]
        /// `running` (its `.vmx` is locked), `stopped`, or `invalid` (its files cannot be read: see ``problem``).
        public var state: String
        /// Who runs it, when running.
        public var runningOn: String?
        /// Why the VM's configuration cannot be used (the file, key and value), when `state` is `invalid`.
        public var problem: String?
    }

    /// The largest boot image (kernel, initrd, test guest) a VM may have; it must also fit in the VM's memory.
    public static let maximumBootImageSize: UInt64 = 1 << 30
    /// The largest `.vmx` or `.vmdk` descriptor read.
    public static let maximumDescriptorSize: UInt64 = 1 << 20

    private static func check(name: String) throws(VMError) {
        guard !name.isEmpty, name.utf8.count <= 100, !name.contains("/"), !name.hasPrefix(".") else {
            throw VMError(.invalidArgument, "VM name '\(name)' must be 1–100 bytes, without '/' and not starting with '.'")
        }
    }

    func wrap<T>(_ body: () throws(VMFSError) -> T) throws(VMError) -> T {
        do { return try body() } catch {
            throw VMError(error.code == .busy ? .busy : (error.code == .notFound ? .notFound : .storage), error.description)
        }
    }

    /// Creates a VM's files. Nothing is left behind when any step fails.
    @discardableResult
    public func create(_ request: CreateRequest) throws(VMError) -> VirtualMachineDefinition {
        try Self.check(name: request.name)
        guard (1...VirtualMachineConfiguration.maximumVCPUCount).contains(request.vcpuCount) else {
            throw VMError(.invalidArgument, "\(request.vcpuCount) vCPUs: a VM has 1…\(VirtualMachineConfiguration.maximumVCPUCount)")
        }
        guard (VirtualMachineConfiguration.minimumMemorySize...VirtualMachineConfiguration.maximumMemorySize).contains(request.memoryBytes),
              request.memoryBytes % (2 << 20) == 0 else {
            throw VMError(.invalidArgument, "memory must be a multiple of 2 MiB from \(VirtualMachineConfiguration.minimumMemorySize >> 20) MiB "
                          + "to \(VirtualMachineConfiguration.maximumMemorySize >> 30) GiB")
        }
        guard request.diskSizes.count <= VirtualMachineConfiguration.maximumDiskCount else {
            throw VMError(.invalidArgument, "\(request.diskSizes.count) disks: a VM has at most \(VirtualMachineConfiguration.maximumDiskCount)")
        }
        guard VirtualMachineDefinition.logSizeLimits.contains(request.logSizeLimit) else {
            throw VMError(.invalidArgument, "a console log limit of \(request.logSizeLimit) bytes is outside "
                          + "\(VirtualMachineDefinition.logSizeLimits.lowerBound)…\(VirtualMachineDefinition.logSizeLimits.upperBound)")
        }
        for size in request.diskSizes where size == 0 || size % 512 != 0 {
            throw VMError(.invalidArgument, "disk size \(size) must be a positive multiple of 512 bytes")
        }
        let name = request.name
        var disks: [String] = []
        var extents: [String] = []
        for index in request.diskSizes.indices {
            let base = index == 0 ? name : "\(name)_\(index)"
            disks.append("\(base).vmdk")
            extents.append("\(base)-flat.vmdk")
        }
        let boot: VirtualMachineDefinition.Boot
        var images: [(String, String)] = []
        switch request.boot {
        case .linux(let kernelPath, let initrdPath, let commandLine):
            images.append((kernelPath, "\(name).kernel"))
            if let initrdPath { images.append((initrdPath, "\(name).initrd")) }
            boot = .linux(kernel: "\(name).kernel", initrd: initrdPath == nil ? nil : "\(name).initrd", commandLine: commandLine)
        case .testGuest(let imagePath, let workload, let arguments):
            images.append((imagePath, "\(name).guest"))
            boot = .testGuest(image: "\(name).guest", workload: workload, arguments: arguments)
        }
        let sources = try images.map { (path, _) throws(VMError) in try LocalBootImage(path: path, memoryBytes: request.memoryBytes) }
        let nics = try Self.generateNetworkInterfaces(portGroups: request.networks,
                                                      avoiding: request.networks.isEmpty ? [] : macAddressesInUse())
        let definition = VirtualMachineDefinition(name: name, vcpuCount: request.vcpuCount, memoryBytes: request.memoryBytes,
                                                  disks: disks, boot: boot, logSizeLimit: request.logSizeLimit, networkInterfaces: nics)
        let files = ["\(name).vmx", "\(name).log"] + disks + extents + images.map(\.1)
        for file in files where (try? volume.status(of: file)) != nil {
            throw VMError(.alreadyExists, "'\(file)' already exists on the volume: VM '\(name)' exists or collides")
        }
        var created: [String] = []
        do throws(VMFSError) {
            for (index, size) in request.diskSizes.enumerated() {
                let extent = try volume.create(extents[index], access: .readWrite)
                created.append(extents[index])
                if request.thick { try extent.allocate(offset: 0, length: size) } else { try extent.truncate(to: size) }
                try extent.close()
                try write(VMDKDescriptor(byteCount: size, extentFileName: extents[index]).text, to: disks[index], created: &created)
            }
            for (source, (_, target)) in zip(sources, images) {
                let handle = try volume.create(target, access: .readWrite)
                created.append(target)
                try source.copy(to: handle)
                try handle.close()
            }
            try write("", to: "\(name).log", created: &created)
            // The .vmx comes last: a VM exists once its configuration does.
            try write(definition.vmx.text, to: "\(name).vmx", created: &created)
        } catch {
            for file in created.reversed() { try? volume.remove(file) }
            throw VMError(error.code == .noSpace || error.code == .tooManyFiles ? .storage : .storage,
                          "creating VM '\(name)' failed (nothing was left behind): \(error.description)")
        }
        return definition
    }

    private func write(_ text: String, to name: String, created: inout [String]) throws(VMFSError) {
        let handle = try volume.create(name, access: .readWrite)
        created.append(name)
        if !text.isEmpty { try handle.write(bytes: Array(text.utf8), at: 0) }
        try handle.close()
    }

    func readText(_ name: String) throws(VMError) -> String {
        let handle = try wrap { () throws(VMFSError) in try volume.open(name, access: .readOnly) }
        defer { try? handle.close() }
        return try Self.text(of: handle, name: name)
    }

    /// The text of an open `.vmx` or `.vmdk`, refused when larger than ``maximumDescriptorSize``.
    static func text(of handle: VMFSCore.FileHandle, name: String) throws(VMError) -> String {
        guard handle.size <= maximumDescriptorSize else {
            throw VMError(.malformedConfiguration, "\(name) is \(handle.size) bytes; a configuration file is at most \(maximumDescriptorSize) bytes")
        }
        do {
            return String(decoding: try handle.read(count: Int(handle.size), at: 0), as: UTF8.self)
        } catch {
            throw VMError(.storage, "reading \(name): \(error.description)")
        }
    }

    /// The definition of VM `name`.
    public func definition(of name: String) throws(VMError) -> VirtualMachineDefinition {
        let fileName = "\(name).vmx"
        guard (try? volume.status(of: fileName)) != nil else { throw VMError(.notFound, "no VM named '\(name)' (no \(fileName))") }
        return try VirtualMachineDefinition(vmx: try VMXFile(parsing: try readText(fileName), fileName: fileName), fileName: fileName)
    }

    /// Removes every file of VM `name` (refused while it runs anywhere).
    public func remove(_ name: String) throws(VMError) {
        let definition = try definition(of: name)
        let vmx = try wrap { () throws(VMFSError) in try volume.open("\(name).vmx", access: .readWrite) }
        defer { try? vmx.close() }
        var files = ["\(name).log"] + definition.bootFiles
        for disk in definition.disks {
            files.append(disk)
            // A descriptor that is gone names no extent; one that is there must be valid, or nothing is removed.
            guard (try? volume.status(of: disk)) != nil else { continue }
            files.append(try VMDKDescriptor(parsing: readText(disk), fileName: disk).extentFileName)
        }
        for file in files where (try? volume.status(of: file)) != nil {
            try wrap { () throws(VMFSError) in try volume.remove(file) }
        }
        try? vmx.close()
        try wrap { () throws(VMFSError) in try volume.remove("\(name).vmx") }
    }
}
