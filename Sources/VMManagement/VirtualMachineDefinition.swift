public import Hypervisor

/// What a VM is made of, as stored in its `.vmx` file on the volume.
///
/// Keys: `displayName`, `numvcpus`, `memSize` (MiB), `diskN.present`/`diskN.fileName` (the
/// descriptor `.vmdk`), `boot.type` (`linux` or `testguest`), `boot.kernel`, `boot.initrd`,
/// `boot.cmdline`, `testguest.image`, `testguest.workload`, `testguest.args` (comma separated),
/// `log.sizeLimit` (bytes the console log `NAME.log` may reach; see ``VolumeLogConsole``), and
/// `ethernetN.*` for NICs (see ``NetworkInterfaceDefinition``). File names are names on the same volume.
public struct VirtualMachineDefinition: Sendable, Equatable {
    /// How the VM boots.
    public enum Boot: Sendable, Equatable {
        case linux(kernel: String, initrd: String?, commandLine: String)
        case testGuest(image: String, workload: TestGuestWorkload, arguments: [UInt64])
    }

    public var name: String
    /// The VM's identity (`uuid.bios`): stable across hosts, migration and HA restarts; nil for a
    /// VM created before identities existed (the host agent assigns one when it registers it).
    public var uuid: String?
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    /// Disk descriptor file names, in order.
    public var disks: [String]
    public var boot: Boot
    /// The size the console log may reach before its oldest part is dropped (`log.sizeLimit`).
    public var logSizeLimit: UInt64
    /// NICs, in order (`ethernet0`, …).
    public var networkInterfaces: [NetworkInterfaceDefinition]

    /// The console log limit when the `.vmx` sets none.
    public static let defaultLogSizeLimit: UInt64 = 8 << 20
    /// The range `log.sizeLimit` may take.
    public static let logSizeLimits: ClosedRange<UInt64> = (64 << 10)...(1 << 30)

    public init(name: String, uuid: String? = nil, vcpuCount: Int, memoryBytes: UInt64, disks: [String], boot: Boot,
                logSizeLimit: UInt64 = defaultLogSizeLimit, networkInterfaces: [NetworkInterfaceDefinition] = []) {
        self.name = name
        self.uuid = uuid
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.disks = disks
        self.boot = boot
        self.logSizeLimit = logSizeLimit
        self.networkInterfaces = networkInterfaces
    }

    /// `text` as a lower-case canonical UUID (`8-4-4-4-12` hex digits; VMware's spaced form is
    /// accepted), or nil when it is not one.
    public static func normalizedUUID(_ text: String) -> String? {
        let hex = text.lowercased().filter { $0 != " " && $0 != "-" }
        guard hex.count == 32, hex.allSatisfy({ $0.isHexDigit }) else { return nil }
        let characters = Array(hex)
        let groups = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }
        return groups.joined(separator: "-")
    }

    /// Every file of the VM on the volume besides the disks' extents.
    public var bootFiles: [String] {
        switch boot {
        case .linux(let kernel, let initrd, _): [kernel] + (initrd.map { [$0] } ?? [])
        case .testGuest(let image, _, _): [image]
        }
    }

    /// The `.vmx` contents.
    public var vmx: VMXFile {
        var file = VMXFile()
        file[".encoding"] = "UTF-8"
        file["config.version"] = "8"
        file["displayName"] = name
        if let uuid { file["uuid.bios"] = uuid }
        file["numvcpus"] = "\(vcpuCount)"
        file["memSize"] = "\(memoryBytes >> 20)"
        for (index, disk) in disks.enumerated() {
            file["disk\(index).present"] = "TRUE"
            file["disk\(index).fileName"] = disk
        }
        switch boot {
        case .linux(let kernel, let initrd, let commandLine):
            file["boot.type"] = "linux"
            file["boot.kernel"] = kernel
            if let initrd { file["boot.initrd"] = initrd }
            file["boot.cmdline"] = commandLine
        case .testGuest(let image, let workload, let arguments):
            file["boot.type"] = "testguest"
            file["testguest.image"] = image
            file["testguest.workload"] = "\(workload)"
            file["testguest.args"] = arguments.map(String.init).joined(separator: ",")
        }
        if logSizeLimit != Self.defaultLogSizeLimit { file["log.sizeLimit"] = "\(logSizeLimit)" }
        for (index, nic) in networkInterfaces.enumerated() { nic.write(into: &file, index: index) }
        return file
    }

    /// Reads a definition from a `.vmx`.
    ///
    /// Every number is range-checked: `numvcpus` 1…254, `memSize` an even number of MiB from 16 MiB
    /// to 63 GiB, at most 16 disks and 8 test-guest arguments, `log.sizeLimit` 64 KiB…1 GiB.
    ///
    /// - Throws: ``VMError/Code/malformedConfiguration`` naming the file and the key that is
    ///   missing or wrong, and the value found.
    public init(vmx file: VMXFile, fileName: String) throws(VMError) {
        let fields = VMXFields(file: file, fileName: fileName)
        name = try fields.required("displayName")
        vcpuCount = try fields.number("numvcpus", in: 1...VirtualMachineConfiguration.maximumVCPUCount)
        let megabytes = try fields.number("memSize", in: VirtualMachineConfiguration.minimumMemorySize >> 20
                                             ... VirtualMachineConfiguration.maximumMemorySize >> 20, unit: " MiB")
        guard megabytes % 2 == 0 else {
            throw VMError(.malformedConfiguration, "\(fileName): 'memSize' = \(fields.quoted(megabytes)) is not a multiple of 2 MiB")
        }
        memoryBytes = megabytes << 20
        uuid = file["uuid.bios"].flatMap(VirtualMachineDefinition.normalizedUUID)
        var disks: [String] = []
        for index in 0...VirtualMachineConfiguration.maximumDiskCount {
            guard file["disk\(index).fileName"] != nil || file["disk\(index).present"] != nil else { break }
            guard index < VirtualMachineConfiguration.maximumDiskCount else {
                throw VMError(.malformedConfiguration, "\(fileName): 'disk\(index)' is one disk too many; a VM has at most "
                              + "\(VirtualMachineConfiguration.maximumDiskCount) (disk0…disk\(VirtualMachineConfiguration.maximumDiskCount - 1))")
            }
            if file["disk\(index).present"]?.uppercased() != "FALSE" { disks.append(try fields.required("disk\(index).fileName")) }
        }
        self.disks = disks
        logSizeLimit = file["log.sizeLimit"] == nil ? Self.defaultLogSizeLimit
            : try fields.number("log.sizeLimit", in: Self.logSizeLimits, unit: " bytes")
        networkInterfaces = try NetworkInterfaceDefinition.read(from: fields)
        switch try fields.required("boot.type").lowercased() {
        case "linux":
            boot = .linux(kernel: try fields.required("boot.kernel"), initrd: file["boot.initrd"],
                          commandLine: file["boot.cmdline"] ?? LinuxBootConfiguration.defaultCommandLine)
        case "testguest":
            let workloadName = try fields.required("testguest.workload")
            guard let workload = TestGuestWorkload.allCases.first(where: { "\($0)" == workloadName }) else {
                throw VMError(.malformedConfiguration, "\(fileName): unknown testguest.workload '\(workloadName)' "
                              + "(known: \(TestGuestWorkload.allCases.map { "\($0)" }.joined(separator: ", ")))")
            }
            let parts = (file["testguest.args"] ?? "").split(separator: ",")
            guard parts.count <= TestGuestABI.argumentCount else {
                throw VMError(.malformedConfiguration, "\(fileName): 'testguest.args' has \(parts.count) values; "
                              + "the test guest takes at most \(TestGuestABI.argumentCount)")
            }
            var arguments: [UInt64] = []
            for part in parts {
                guard let value = UInt64(part.trimmedOfWhitespace) else {
                    throw VMError(.malformedConfiguration, "\(fileName): 'testguest.args' has \(fields.quoted(part)), "
                                  + "not a number in 0…\(UInt64.max)")
                }
                arguments.append(value)
            }
            boot = .testGuest(image: try fields.required("testguest.image"), workload: workload, arguments: arguments)
        case let other:
            throw VMError(.malformedConfiguration, "\(fileName): boot.type '\(other)' is neither 'linux' nor 'testguest'")
        }
    }
}

import FoundationEssentials
