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

        public init(name: String, vcpuCount: Int, memoryBytes: UInt64, diskSizes: [UInt64], thick: Bool = false, boot: BootImages) {
            self.name = name
            self.vcpuCount = vcpuCount
            self.memoryBytes = memoryBytes
            self.diskSizes = diskSizes
            self.thick = thick
            self.boot = boot
        }
    }

    /// A VM as listed.
    public struct Summary: Sendable, Codable, Equatable {
        public var name: String
        public var vcpuCount: Int
        public var memoryBytes: UInt64
        public var diskBytes: [UInt64]
        /// `running` (its `.vmx` is locked) or `stopped`.
        public var state: String
        /// Who runs it, when running.
        public var runningOn: String?
    }

    private static func check(name: String) throws(VMError) {
        guard !name.isEmpty, name.utf8.count <= 100, !name.contains("/"), !name.hasPrefix(".") else {
            throw VMError(.invalidArgument, "VM name '\(name)' must be 1–100 bytes, without '/' and not starting with '.'")
        }
    }

    private func wrap<T>(_ body: () throws(VMFSError) -> T) throws(VMError) -> T {
        do { return try body() } catch {
            throw VMError(error.code == .busy ? .busy : (error.code == .notFound ? .notFound : .storage), error.description)
        }
    }

    /// Creates a VM's files. Nothing is left behind when any step fails.
    @discardableResult
    public func create(_ request: CreateRequest) throws(VMError) -> VirtualMachineDefinition {
        try Self.check(name: request.name)
        guard request.vcpuCount >= 1 else { throw VMError(.invalidArgument, "a VM needs at least one vCPU") }
        guard request.memoryBytes >= VirtualMachineConfiguration.minimumMemorySize, request.memoryBytes % (2 << 20) == 0 else {
            throw VMError(.invalidArgument, "memory must be a multiple of 2 MiB and at least \(VirtualMachineConfiguration.minimumMemorySize >> 20) MiB")
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
        for (path, _) in images where !FileManager.default.isReadableFile(atPath: path) {
            throw VMError(.invalidArgument, "boot image \(path) cannot be read")
        }
        let definition = VirtualMachineDefinition(name: name, vcpuCount: request.vcpuCount, memoryBytes: request.memoryBytes,
                                                  disks: disks, boot: boot)
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
            for (path, target) in images { try copy(localPath: path, to: target, created: &created) }
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

    private func copy(localPath: String, to name: String, created: inout [String]) throws(VMFSError) {
        guard let data = FileManager.default.contents(atPath: localPath) else {
            throw VMFSError(.notFound, "cannot read \(localPath)")
        }
        let handle = try volume.create(name, access: .readWrite)
        created.append(name)
        let bytes = [UInt8](data)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + (1 << 20), bytes.count)
            try handle.write(bytes: Array(bytes[offset..<end]), at: UInt64(offset))
            offset = end
        }
        try handle.close()
    }

    private func readText(_ name: String) throws(VMError) -> String {
        try wrap { () throws(VMFSError) -> String in
            let handle = try volume.open(name, access: .readOnly)
            defer { try? handle.close() }
            return String(decoding: try handle.read(count: Int(min(handle.size, 1 << 20)), at: 0), as: UTF8.self)
        }
    }

    /// The definition of VM `name`.
    public func definition(of name: String) throws(VMError) -> VirtualMachineDefinition {
        let fileName = "\(name).vmx"
        guard (try? volume.status(of: fileName)) != nil else { throw VMError(.notFound, "no VM named '\(name)' (no \(fileName))") }
        return try VirtualMachineDefinition(vmx: try VMXFile(parsing: try readText(fileName), fileName: fileName), fileName: fileName)
    }

    /// Every VM on the volume with its state. Configurations are read without locks, so VMs
    /// running on other hosts are listed too.
    public func list() throws(VMError) -> [Summary] {
        let files = try wrap { () throws(VMFSError) in try volume.list() }
        let inspector = try wrap { () throws(VMFSError) in try VolumeInspector(device: volume.device) }
        let locks = (try? inspector.locks()) ?? []
        func text(_ file: String) -> String? {
            (try? inspector.contents(of: file)).map { String(decoding: $0, as: UTF8.self) }
        }
        var result: [Summary] = []
        for file in files where file.name.hasSuffix(".vmx") {
            let name = String(file.name.dropLast(4))
            guard let vmxText = text(file.name), let vmx = try? VMXFile(parsing: vmxText, fileName: file.name),
                  let definition = try? VirtualMachineDefinition(vmx: vmx, fileName: file.name) else { continue }
            let sizes = definition.disks.map { disk -> UInt64 in
                text(disk).flatMap { try? VMDKDescriptor(parsing: $0, fileName: disk).byteCount } ?? 0
            }
            let lock = locks.first { $0.object == "file '\(file.name)'" && $0.mode == "exclusive" }
            let owner = lock?.holders.first.map { "\($0.hostName.isEmpty ? $0.host : $0.hostName) (slot \($0.slot)) since \($0.since)" }
            result.append(Summary(name: name, vcpuCount: definition.vcpuCount, memoryBytes: definition.memoryBytes, diskBytes: sizes,
                                  state: lock == nil ? "stopped" : "running", runningOn: owner))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// Removes every file of VM `name` (refused while it runs anywhere).
    public func remove(_ name: String) throws(VMError) {
        let definition = try definition(of: name)
        let vmx = try wrap { () throws(VMFSError) in try volume.open("\(name).vmx", access: .readWrite) }
        defer { try? vmx.close() }
        var files = ["\(name).log"] + definition.bootFiles
        for disk in definition.disks {
            files.append(disk)
            if let descriptor = try? VMDKDescriptor(parsing: readText(disk), fileName: disk) { files.append(descriptor.extentFileName) }
        }
        for file in files where (try? volume.status(of: file)) != nil {
            try wrap { () throws(VMFSError) in try volume.remove(file) }
        }
        try? vmx.close()
        try wrap { () throws(VMFSError) in try volume.remove("\(name).vmx") }
    }

    /// Runs VM `name` in this process until it powers off, holding its locks meanwhile.
    ///
    /// - Parameter console: Also receives the console output (the `.log` always does).
    /// - Throws: ``VMError/Code/busy`` naming the host that runs it already.
    /// - Parameter started: Called with the machine once it is built, before it runs (to stop it
    ///   from a signal handler, for example).
    public func run(_ name: String, console: (any ConsoleSink)? = StandardOutputConsole(),
                    timeLimit: Double? = nil, started: (@Sendable (VirtualMachine) -> Void)? = nil) throws(VMError) -> PowerOffReason {
        let vmxName = "\(name).vmx"
        guard (try? volume.status(of: vmxName)) != nil else { throw VMError(.notFound, "no VM named '\(name)' (no \(vmxName))") }
        let vmx: VMFSCore.FileHandle
        do throws(VMFSError) {
            vmx = try volume.open(vmxName, access: .readWrite)
        } catch where error.code == .busy {
            throw VMError(.busy, "VM '\(name)' is already running: \(error.message)")
        } catch {
            throw VMError(.storage, error.description)
        }
        var handles: [VMFSCore.FileHandle] = [vmx]
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer {
            for handle in handles.reversed() { try? handle.close() }
            try? FileManager.default.removeItem(at: scratch)
        }
        let text = try wrap { () throws(VMFSError) -> String in
            String(decoding: try vmx.read(count: Int(min(vmx.size, 1 << 20)), at: 0), as: UTF8.self)
        }
        let definition = try VirtualMachineDefinition(vmx: try VMXFile(parsing: text, fileName: vmxName), fileName: vmxName)
        var disks: [any DiskBackend] = []
        for disk in definition.disks {
            let descriptor = try VMDKDescriptor(parsing: try readText(disk), fileName: disk)
            let handle: VMFSCore.FileHandle
            do throws(VMFSError) {
                handle = try volume.open(descriptor.extentFileName, access: .readWrite)
            } catch {
                throw VMError(error.code == .busy ? .busy : .storage, "disk '\(descriptor.extentFileName)' of VM '\(name)': \(error.message)")
            }
            handles.append(handle)
            guard handle.size >= descriptor.byteCount else {
                throw VMError(.storage, "disk '\(descriptor.extentFileName)' is \(handle.size) bytes; its descriptor says \(descriptor.byteCount)")
            }
            disks.append(VMFSDiskBackend(handle: handle, identifier: String("\(name)-\(disks.count)".prefix(20))))
        }
        let log = try wrap { () throws(VMFSError) in try volume.open("\(name).log", access: .readWrite) }
        handles.append(log)
        let sink = VolumeLogConsole(handle: log, next: console)
        let host = volume.options.host
        sink.write(Array("--- \(name) started on host \(host.name) (\(host.uuid)) at \(formatWallTime(Int64(Date().timeIntervalSince1970 * 1e9))) ---\n".utf8))
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        func extract(_ file: String) throws(VMError) -> String {
            let target = scratch.appendingPathComponent(file).path
            try wrap { () throws(VMFSError) in
                let handle = try volume.open(file, access: .readOnly)
                defer { try? handle.close() }
                let bytes = try handle.read(count: Int(handle.size), at: 0)
                guard FileManager.default.createFile(atPath: target, contents: Data(bytes)) else {
                    throw VMFSError(.io, "cannot write \(target)")
                }
            }
            return target
        }
        let bootSource: BootSource
        switch definition.boot {
        case .linux(let kernel, let initrd, let commandLine):
            let kernelPath = try extract(kernel)
            let initrdPath: String? = if let initrd { try extract(initrd) } else { nil }
            bootSource = .linux(LinuxBootConfiguration(kernelPath: kernelPath, initrdPath: initrdPath, commandLine: commandLine))
        case .testGuest(let image, let workload, let arguments):
            bootSource = .testGuest(TestGuestConfiguration(imagePath: try extract(image), workload: workload, arguments: arguments))
        }
        let configuration = VirtualMachineConfiguration(vcpuCount: definition.vcpuCount, memorySize: definition.memoryBytes,
                                                        disks: disks, bootSource: bootSource, console: sink)
        do {
            let machine = try VirtualMachine(configuration: configuration)
            started?(machine)
            let reason = try machine.run(timeLimit: timeLimit)
            sink.write(Array("--- \(name) stopped: \(reason) ---\n".utf8))
            sink.flush()
            return reason
        } catch {
            sink.write(Array("--- \(name) failed: \(error) ---\n".utf8))
            sink.flush()
            throw VMError(.hypervisor, "VM '\(name)': \(error)")
        }
    }
}
