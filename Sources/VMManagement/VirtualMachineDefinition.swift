public import Hypervisor

/// What a VM is made of, as stored in its `.vmx` file on the volume.
///
/// Keys: `displayName`, `numvcpus`, `memSize` (MiB), `diskN.present`/`diskN.fileName` (the
/// descriptor `.vmdk`), `boot.type` (`linux` or `testguest`), `boot.kernel`, `boot.initrd`,
/// `boot.cmdline`, `testguest.image`, `testguest.workload`, `testguest.args` (comma separated).
/// File names are names on the same volume.
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

    public init(name: String, uuid: String? = nil, vcpuCount: Int, memoryBytes: UInt64, disks: [String], boot: Boot) {
        self.name = name
        self.uuid = uuid
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.disks = disks
        self.boot = boot
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
        return file
    }

    /// Reads a definition from a `.vmx`.
    ///
    /// - Throws: ``VMError/Code/malformedConfiguration`` naming the file and key that is missing or wrong.
    public init(vmx file: VMXFile, fileName: String) throws(VMError) {
        func required(_ key: String) throws(VMError) -> String {
            guard let value = file[key], !value.isEmpty else {
                throw VMError(.malformedConfiguration, "\(fileName): '\(key)' is missing")
            }
            return value
        }
        func number(_ key: String) throws(VMError) -> UInt64 {
            let text = try required(key)
            guard let value = UInt64(text) else { throw VMError(.malformedConfiguration, "\(fileName): '\(key)' = \"\(text)\" is not a number") }
            return value
        }
        name = try required("displayName")
        uuid = file["uuid.bios"].flatMap(VirtualMachineDefinition.normalizedUUID)
        vcpuCount = Int(try number("numvcpus"))
        memoryBytes = try number("memSize") << 20
        guard vcpuCount >= 1 else { throw VMError(.malformedConfiguration, "\(fileName): numvcpus must be at least 1") }
        guard memoryBytes > 0 else { throw VMError(.malformedConfiguration, "\(fileName): memSize must be positive") }
        var disks: [String] = []
        var index = 0
        while file["disk\(index).fileName"] != nil || file["disk\(index).present"] != nil {
            if file["disk\(index).present"]?.uppercased() != "FALSE" { disks.append(try required("disk\(index).fileName")) }
            index += 1
        }
        self.disks = disks
        switch try required("boot.type").lowercased() {
        case "linux":
            boot = .linux(kernel: try required("boot.kernel"), initrd: file["boot.initrd"],
                          commandLine: file["boot.cmdline"] ?? LinuxBootConfiguration.defaultCommandLine)
        case "testguest":
            let workloadName = try required("testguest.workload")
            guard let workload = TestGuestWorkload.allCases.first(where: { "\($0)" == workloadName }) else {
                throw VMError(.malformedConfiguration, "\(fileName): unknown testguest.workload '\(workloadName)' "
                              + "(known: \(TestGuestWorkload.allCases.map { "\($0)" }.joined(separator: ", ")))")
            }
            var arguments: [UInt64] = []
            for part in (file["testguest.args"] ?? "").split(separator: ",") {
                guard let value = UInt64(part.trimmedOfWhitespace) else {
                    throw VMError(.malformedConfiguration, "\(fileName): testguest.args has '\(part)', not a number")
                }
                arguments.append(value)
            }
            boot = .testGuest(image: try required("testguest.image"), workload: workload, arguments: arguments)
        case let other:
            throw VMError(.malformedConfiguration, "\(fileName): boot.type '\(other)' is neither 'linux' nor 'testguest'")
        }
    }
}

import FoundationEssentials
