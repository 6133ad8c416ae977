// swift-tools-version: 6.1
import PackageDescription

/// Settings every Swift target of the project shares: Swift 6 language mode (strict concurrency)
/// plus the upcoming features that keep C types out of public API.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "vmfs",
    products: [
        .library(name: "VMFSCore", targets: ["VMFSCore"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
        .executable(name: "mkfs.vmfs", targets: ["mkfs.vmfs"]),
        .executable(name: "fsck.vmfs", targets: ["fsck.vmfs"]),
        .executable(name: "vmfs", targets: ["vmfs"]),
        .executable(name: "vmfs-fuse", targets: ["vmfs-fuse"]),
        .executable(name: "vmctl", targets: ["vmctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // ---- C bridges (imported with `internal import` only) ----------------------------
        .target(name: "CVMFSLinux", cSettings: [.define("_GNU_SOURCE")]),
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CKVM", cSettings: [.define("_GNU_SOURCE")]),

        // ---- Libraries -------------------------------------------------------------------
        .target(name: "VMFSCore", dependencies: ["CVMFSLinux", "CURing"], swiftSettings: strictSettings),
        // The VMM: KVM wrappers, devices, boot paths. Knows nothing of VMFS; disks come through a protocol.
        .target(name: "Hypervisor", dependencies: ["CKVM", "CVMFSLinux"], swiftSettings: strictSettings),
        // Runs one VM from the command line (benchmarks, manual checks); vmctl is the real tool.
        .executableTarget(
            name: "vm-run", dependencies: ["Hypervisor", argumentParser], path: "Tools/vm-run",
            swiftSettings: strictSettings),
        // VMs as files on a VMFS volume: .vmx/.vmdk, the VMFS-backed virtio-blk disk, running with locks.
        .target(name: "VMManagement", dependencies: ["VMFSCore", "Hypervisor"], swiftSettings: strictSettings),
        .target(
            name: "VMFSToolSupport", dependencies: ["VMFSCore", argumentParser],
            path: "Tools/Support", swiftSettings: strictSettings),

        // ---- Daemon and tools ------------------------------------------------------------
        .executableTarget(
            name: "vmfs-fuse", dependencies: ["VMFSCore", "CFuse"],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "mkfs.vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/mkfs.vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "fsck.vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/fsck.vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", "CVMFSLinux", argumentParser],
            path: "Tools/vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "vmctl", dependencies: ["VMFSCore", "Hypervisor", "VMManagement", "VMFSToolSupport", argumentParser],
            path: "Tools/vmctl", swiftSettings: strictSettings),
        // A host process for tests and benchmarks: runs scripted workloads against a volume.
        .executableTarget(
            name: "vmfs-testhost", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/vmfs-testhost", swiftSettings: strictSettings),

        // Measurements for the benchmark scripts (Tools/scripts/bench-*.sh); not a test.
        .executableTarget(
            name: "vmfs-bench", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Benchmarks/vmfs-bench", swiftSettings: strictSettings),

        // ---- Tests -----------------------------------------------------------------------
        // Running the built tools and host processes from tests.
        .target(name: "VMFSTestSupport", dependencies: ["VMFSCore"], path: "Tests/TestSupport", swiftSettings: strictSettings),
        .testTarget(
            name: "VMFSCoreTests", dependencies: ["VMFSCore", "CVMFSLinux"], swiftSettings: strictSettings),
        .testTarget(
            name: "ToolTests",
            dependencies: ["VMFSCore", "VMFSTestSupport", "mkfs.vmfs", "fsck.vmfs", "vmfs", "vmfs-testhost", "vmfs-fuse"],
            swiftSettings: strictSettings),
        // Real FUSE mounts of real volumes by real daemon processes (needs root and /dev/fuse).
        // Helpers/ holds C programs the tests compile with the system compiler.
        .testTarget(
            name: "FuseTests", dependencies: ["VMFSCore", "vmfs-fuse", "mkfs.vmfs", "fsck.vmfs", "vmfs"],
            exclude: ["Helpers"], swiftSettings: strictSettings),
        .testTarget(
            name: "HypervisorTests", dependencies: ["Hypervisor", "vmctl"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "VirtualMachineTests", dependencies: ["VMManagement", "VMFSCore", "VMFSTestSupport", "Hypervisor", "vmctl", "mkfs.vmfs", "vmfs"],
            swiftSettings: strictSettings),
    ]
)
