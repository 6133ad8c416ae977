internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// The KVM capability numbers the VMM checks (`KVM_CAP_*` in `<linux/kvm.h>`).
enum KVMCapability: Int32 {
    case irqchip = 0
    case userMemory = 3
    case setTSSAddress = 4
    case extendedCPUID = 7
    case recommendedVCPUs = 9
    case pit2 = 33
    case maxVCPUs = 66
    case immediateExit = 136
}

/// The `/dev/kvm` system handle: API version, capabilities, supported CPUID.
final class KVMSystem: Sendable {
    /// The KVM API version every supported kernel reports.
    static let expectedAPIVersion: Int32 = 12

    let descriptor: OwnedFileDescriptor

    /// Opens `/dev/kvm` and checks the API version and the capabilities the VMM relies on.
    init(path: String = "/dev/kvm") throws(HypervisorError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            throw HypervisorError(.kvmUnavailable, "cannot open \(path)", errno: errno)
        }
        descriptor = OwnedFileDescriptor(fd)
        let version = ioctl(fd, CKVM_GET_API_VERSION)
        guard version == Self.expectedAPIVersion else {
            throw HypervisorError(
                .kvmUnavailable, "\(path) reports KVM API version \(version), expected \(Self.expectedAPIVersion)")
        }
        for capability in [KVMCapability.irqchip, .userMemory, .setTSSAddress, .extendedCPUID, .pit2, .immediateExit]
        where check(capability) <= 0 {
            throw HypervisorError(.kvmUnavailable, "\(path) lacks required capability \(capability) (KVM_CAP \(capability.rawValue))")
        }
    }

    /// `KVM_CHECK_EXTENSION`: 0 when unsupported, otherwise a capability-specific positive value.
    func check(_ capability: KVMCapability) -> Int32 {
        max(0, ioctl(descriptor.rawValue, CKVM_CHECK_EXTENSION, capability.rawValue))
    }

    /// The largest vCPU count a VM may have (`KVM_CAP_MAX_VCPUS`, falling back to `NR_VCPUS`).
    var maximumVCPUCount: Int {
        let maximum = check(.maxVCPUs)
        return Int(maximum > 0 ? maximum : max(check(.recommendedVCPUs), 4))
    }

    /// Size of the `kvm_run` mapping of each vCPU.
    func vcpuMappingSize() throws(HypervisorError) -> Int {
        Int(try checkedIoctl("KVM_GET_VCPU_MMAP_SIZE") { ioctl(descriptor.rawValue, CKVM_GET_VCPU_MMAP_SIZE) })
    }

    /// The CPUID leaves KVM can virtualize on this host (`KVM_GET_SUPPORTED_CPUID`).
    func supportedCPUID() throws(HypervisorError) -> [CPUIDEntry] {
        var capacity: UInt32 = 128
        while true {
            guard let block = ckvm_cpuid2_allocate(capacity) else {
                throw HypervisorError(.systemCall, "cannot allocate a CPUID table of \(capacity) entries", errno: ENOMEM)
            }
            defer { ckvm_free(block) }
            let result = ioctl(descriptor.rawValue, CKVM_GET_SUPPORTED_CPUID, UnsafeMutableRawPointer(block))
            if result < 0 {
                let error = errno
                if error == E2BIG, capacity < 4096 {
                    capacity *= 2
                    continue
                }
                throw .systemCall("KVM_GET_SUPPORTED_CPUID", errno: error)
            }
            return (0..<block.pointee.nent).map { CPUIDEntry(ckvm_cpuid2_entry(block, $0).pointee) }
        }
    }

    /// Creates a virtual machine (`KVM_CREATE_VM`).
    func createVirtualMachine() throws(HypervisorError) -> KVMVirtualMachine {
        let fd = try checkedIoctl("KVM_CREATE_VM") { ioctl(descriptor.rawValue, CKVM_CREATE_VM, 0) }
        return KVMVirtualMachine(descriptor: OwnedFileDescriptor(fd), system: self)
    }
}

/// One CPUID leaf as KVM reports or accepts it.
struct CPUIDEntry: Sendable, Equatable {
    var function: UInt32
    var index: UInt32
    var flags: UInt32
    var eax: UInt32
    var ebx: UInt32
    var ecx: UInt32
    var edx: UInt32

    init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
         eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    init(_ entry: kvm_cpuid_entry2) {
        self.init(function: entry.function, index: entry.index, flags: entry.flags,
                  eax: entry.eax, ebx: entry.ebx, ecx: entry.ecx, edx: entry.edx)
    }
}

/// True when the host's KVM is the software `kvm_pvm` hypervisor (guest CPL0 code is emulated;
/// some instructions such as `cmpxchg16b` and `xrstor` are not emulated).
public var hostUsesSoftwareHypervisor: Bool {
    access("/sys/module/kvm_pvm", F_OK) == 0
}
