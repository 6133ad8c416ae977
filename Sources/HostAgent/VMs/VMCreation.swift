internal import VMFSCore
internal import VMManagement
internal import Hypervisor
internal import FoundationEssentials

/// What to create: a VM's files on a volume, booting an image that is already on the volume.
public struct VMCreateRequest: Sendable, Equatable {
    public enum Boot: Sendable, Equatable {
        /// A kernel (and initrd) on the volume.
        case linux(kernel: String, initrd: String?, commandLine: String?)
        /// The test guest image on the volume, its workload name and arguments.
        case testGuest(image: String, workload: String, arguments: [UInt64])
    }

    public var datastore: String
    public var name: String
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    public var diskBytes: [UInt64]
    public var thick: Bool
    public var boot: Boot
    /// The port group of each NIC (their addresses are generated).
    public var networks: [String]

    public init(datastore: String, name: String, vcpuCount: Int, memoryBytes: UInt64, diskBytes: [UInt64], thick: Bool = false, boot: Boot,
                networks: [String] = []) {
        self.datastore = datastore
        self.name = name
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.diskBytes = diskBytes
        self.thick = thick
        self.boot = boot
        self.networks = networks
    }
}

/// Creates a VM's files: disks (extent + descriptor), log and `.vmx` (last: a VM exists once its
/// configuration does). On any failure every file created so far is removed.
enum VMCreation {
    static let maximumVCPUs = 64
    static let maximumMemory: UInt64 = 63 << 30
    static let maximumDisks = 16

    static func validate(_ request: VMCreateRequest) throws(AgentError) -> VirtualMachineDefinition.Boot {
        let name = request.name
        guard !name.isEmpty, name.utf8.count <= 100, !name.contains("/"), !name.hasPrefix("."),
              name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw AgentError(.invalidArgument, "name '\(name)' must be 1–100 bytes of printable characters, without '/', not starting with '.'", field: "name")
        }
        guard (1...maximumVCPUs).contains(request.vcpuCount) else {
            throw AgentError(.invalidArgument, "vcpus is \(request.vcpuCount); it must be 1–\(maximumVCPUs)", field: "vcpus")
        }
        guard request.memoryBytes >= VirtualMachineConfiguration.minimumMemorySize, request.memoryBytes <= maximumMemory,
              request.memoryBytes % (2 << 20) == 0 else {
            throw AgentError(.invalidArgument, "memoryBytes is \(request.memoryBytes); it must be a multiple of 2 MiB from 16 MiB to 63 GiB",
                             field: "memoryBytes")
        }
        guard request.diskBytes.count <= maximumDisks else {
            throw AgentError(.invalidArgument, "\(request.diskBytes.count) disks; at most \(maximumDisks)", field: "diskBytes")
        }
        for (index, size) in request.diskBytes.enumerated() where size == 0 || size % 512 != 0 || size > 64 << 40 {
            throw AgentError(.invalidArgument, "disk \(index) size \(size) must be a positive multiple of 512 bytes, at most 64 TiB",
                             field: "diskBytes[\(index)]")
        }
        switch request.boot {
        case .linux(let kernel, let initrd, let commandLine):
            return .linux(kernel: kernel, initrd: initrd, commandLine: commandLine ?? LinuxBootConfiguration.defaultCommandLine)
        case .testGuest(let image, let workloadName, let arguments):
            guard let workload = TestGuestWorkload.allCases.first(where: { "\($0)" == workloadName }) else {
                throw AgentError(.invalidArgument, "unknown test-guest workload '\(workloadName)' (known: "
                                 + TestGuestWorkload.allCases.map { "\($0)" }.joined(separator: ", ") + ")", field: "boot.workload")
            }
            guard arguments.count <= TestGuestABI.argumentCount else {
                throw AgentError(.invalidArgument, "\(arguments.count) workload arguments; at most \(TestGuestABI.argumentCount)",
                                 field: "boot.arguments")
            }
            return .testGuest(image: image, workload: workload, arguments: arguments)
        }
    }

    /// Creates the files and returns the definition (with a new UUID).
    static func create(_ request: VMCreateRequest, on volume: Volume) throws(AgentError) -> VirtualMachineDefinition {
        let boot = try validate(request)
        let name = request.name
        let bootFiles: [String] = switch boot {
        case .linux(let kernel, let initrd, _): [kernel] + (initrd.map { [$0] } ?? [])
        case .testGuest(let image, _, _): [image]
        }
        for file in bootFiles where (try? volume.status(of: file)) == nil {
            throw AgentError(.notFound, "boot image '\(file)' is not on volume; upload it first", field: "boot")
        }
        var disks: [String] = []
        var extents: [String] = []
        for index in request.diskBytes.indices {
            let base = index == 0 ? name : "\(name)_\(index)"
            disks.append("\(base).vmdk")
            extents.append("\(base)-flat.vmdk")
        }
        let nics: [NetworkInterfaceDefinition]
        do {
            nics = try VirtualMachineStore.generateNetworkInterfaces(
                portGroups: request.networks, avoiding: request.networks.isEmpty ? [] : VirtualMachineStore(volume: volume).macAddressesInUse())
        } catch {
            throw AgentError(.invalidArgument, error.message, field: "networks")
        }
        let definition = VirtualMachineDefinition(name: name, uuid: UUID().uuidString.lowercased(), vcpuCount: request.vcpuCount,
                                                  memoryBytes: request.memoryBytes, disks: disks, boot: boot, networkInterfaces: nics)
        for file in ["\(name).vmx", "\(name).log"] + disks + extents where (try? volume.status(of: file)) != nil {
            throw AgentError(.alreadyExists, "'\(file)' already exists on the volume: VM '\(name)' exists or collides", field: "name")
        }
        var created: [String] = []
        func make(_ file: String, _ body: (FileHandle) throws(VMFSError) -> Void) throws(VMFSError) {
            let handle = try volume.create(file, access: .readWrite)
            created.append(file)
            defer { try? handle.close() }
            try body(handle)
            try handle.close()
        }
        do throws(VMFSError) {
            for (index, size) in request.diskBytes.enumerated() {
                try make(extents[index]) { (handle) throws(VMFSError) in
                    if request.thick { try handle.allocate(offset: 0, length: size) } else { try handle.truncate(to: size) }
                }
                let text = VMDKDescriptor(byteCount: size, extentFileName: extents[index]).text
                try make(disks[index]) { (handle) throws(VMFSError) in try handle.write(bytes: Array(text.utf8), at: 0) }
            }
            try make("\(name).log") { _ in }
            try make("\(name).vmx") { (handle) throws(VMFSError) in try handle.write(bytes: Array(definition.vmx.text.utf8), at: 0) }
            try volume.sync()
        } catch {
            for file in created.reversed() { try? volume.remove(file) }
            let code: AgentError.Code = error.code == .tooManyFiles || error.code == .noSpace ? .invalidArgument : .storageUnavailable
            throw AgentError(code, "creating VM '\(name)' failed, nothing was left behind: \(error.message)")
        }
        return definition
    }
}
