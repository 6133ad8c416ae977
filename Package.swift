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
let openAPIRuntime = Target.Dependency.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")

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
        .executable(name: "vmx", targets: ["vmx"]),
        .executable(name: "vmhostd", targets: ["vmhostd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // The host agent's HTTP API: spec-first (OpenAPI), served by Hummingbird, called through AsyncHTTPClient.
        .package(url: "https://github.com/apple/swift-openapi-generator", from: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // ---- C bridges (imported with `internal import` only) ----------------------------
        .target(name: "CVMFSLinux", cSettings: [.define("_GNU_SOURCE")]),
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CKVM", cSettings: [.define("_GNU_SOURCE")]),
        // libiscsi (Debian libiscsi-dev) behind a thread-safe session with its own event loop.
        .target(name: "CISCSI", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary("iscsi")]),

        // ---- Libraries -------------------------------------------------------------------
        // Threads and time shared by the libraries and daemons (monitor, monotonic clock).
        .target(name: "SystemSupport", dependencies: ["CVMFSLinux"], swiftSettings: strictSettings),
        .target(name: "VMFSCore", dependencies: ["CVMFSLinux", "CURing", "CISCSI"], swiftSettings: strictSettings),
        // The agent ↔ VMM protocol: control frames, disk channel records (docs/VMX-PROTOCOL.md).
        .target(name: "VMXProtocol", dependencies: ["CVMFSLinux", "SystemSupport", "LiveMigration"], swiftSettings: strictSettings),
        // The VMM: KVM wrappers, devices, boot paths. Knows nothing of VMFS; disks come through a protocol.
        .target(name: "Hypervisor", dependencies: ["CKVM", "CVMFSLinux", "SystemSupport"], swiftSettings: strictSettings),
        // Runs one VM from the command line (benchmarks, manual checks); vmctl is the real tool.
        .executableTarget(
            name: "vm-run", dependencies: ["Hypervisor", argumentParser], path: "Tools/vm-run",
            swiftSettings: strictSettings),
        // Live migration between VMMs: encrypted streams, pre-copy, auto-converge, post-copy (docs/MIGRATION.md).
        .target(
            name: "LiveMigration", dependencies: ["Hypervisor", "SystemSupport", "CVMFSLinux", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings),
        // The VMM side of a VM run by the host agent: disks over disk channels, console relay, lease.
        .target(name: "VMXRuntime", dependencies: ["Hypervisor", "VMXProtocol", "SystemSupport", "CVMFSLinux", "LiveMigration"], swiftSettings: strictSettings),
        // Virtual switches on a host: bridges, TAP ports, nftables policy, tc shaping, VLAN uplinks (docs/NETWORKING.md).
        .target(
            name: "HostNetworking", dependencies: ["Hypervisor", "SystemSupport", "CVMFSLinux", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strictSettings),
        // VMs as files on a VMFS volume: .vmx/.vmdk, the VMFS-backed virtio-blk disk, running with locks.
        .target(name: "VMManagement", dependencies: ["VMFSCore", "Hypervisor"], swiftSettings: strictSettings),
        // The host agent's logic (vmhostd without its HTTP layer): volumes, VMs, VMMs, events, tasks.
        .target(
            name: "HostAgent", dependencies: ["VMFSCore", "Hypervisor", "VMManagement", "VMXProtocol", "SystemSupport", "CVMFSLinux", "HostNetworking", "LiveMigration"],
            swiftSettings: strictSettings),
        // The host agent API's types, client and server protocol, generated from openapi.yaml.
        .target(
            name: "HostAgentAPI", dependencies: [openAPIRuntime], swiftSettings: strictSettings,
            plugins: [.plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator")]),
        // Talking to a host agent: over its Unix socket, or HTTPS with a token (vmctl, vmfs, tests).
        .target(
            name: "HostAgentClient",
            dependencies: [
                "HostAgentAPI", "VMFSCore", openAPIRuntime,
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "VMFSToolSupport", dependencies: ["VMFSCore", argumentParser],
            path: "Tools/Support", swiftSettings: strictSettings),

        // ---- Daemon and tools ------------------------------------------------------------
        // The host agent daemon: HostAgent behind its HTTP API on a Unix socket and on TLS.
        .executableTarget(
            name: "vmhostd",
            dependencies: [
                "HostAgent", "HostAgentAPI", "HostAgentClient", "LiveMigration", "VMFSCore", "VMFSFuse", "SystemSupport", "HostNetworking", argumentParser, openAPIRuntime,
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tools/vmhostd", exclude: ["hostd.toml.example", "vmhostd.service"], swiftSettings: strictSettings),
        // The VMM process of one VM run by the host agent (docs/AGENT.md).
        .executableTarget(name: "vmx", dependencies: ["VMXRuntime"], path: "Tools/vmx", swiftSettings: strictSettings),
        // The FUSE layer (libfuse3 low-level): the vmfs-fuse daemon, and mounts the host agent serves.
        .target(name: "VMFSFuse", dependencies: ["VMFSCore", "CFuse"], path: "Sources/vmfs-fuse", swiftSettings: strictSettings),
        .executableTarget(
            name: "vmfs-fuse", dependencies: ["VMFSFuse", "VMFSCore", "HostAgentAPI", "HostAgentClient", openAPIRuntime],
            path: "Tools/vmfs-fuse", swiftSettings: strictSettings),
        .executableTarget(
            name: "mkfs.vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/mkfs.vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "fsck.vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/fsck.vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "vmfs", dependencies: ["VMFSCore", "VMFSToolSupport", "CVMFSLinux", argumentParser, "HostAgentAPI", "HostAgentClient", "SystemSupport", openAPIRuntime],
            path: "Tools/vmfs", swiftSettings: strictSettings),
        .executableTarget(
            name: "vmctl", dependencies: ["VMFSCore", "Hypervisor", "VMManagement", "VMFSToolSupport", "HostAgentAPI", "HostAgentClient",
                                          "HostNetworking", argumentParser, openAPIRuntime],
            path: "Tools/vmctl", swiftSettings: strictSettings),
        // A host process for tests and benchmarks: runs scripted workloads against a volume.
        .executableTarget(
            name: "vmfs-testhost", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Tools/vmfs-testhost", swiftSettings: strictSettings),

        // Measurements for the benchmark scripts (Tools/scripts/bench-*.sh); not a test.
        .executableTarget(
            name: "vmfs-bench", dependencies: ["VMFSCore", "VMFSToolSupport", argumentParser],
            path: "Benchmarks/vmfs-bench", swiftSettings: strictSettings),

        // Live-migration downtime, total time and bytes sent (Benchmarks/migration/bench-migration.sh); not a test.
        .executableTarget(
            name: "migration-bench", dependencies: ["Hypervisor", "LiveMigration", "SystemSupport", argumentParser],
            path: "Benchmarks/migration", exclude: ["bench-migration.sh"], swiftSettings: strictSettings),

        // ---- Tests -----------------------------------------------------------------------
        // Running the built tools and host processes from tests; the attacker's field rewriter.
        .target(name: "VMFSTestSupport", dependencies: ["VMFSCore"], path: "Tests/TestSupport", swiftSettings: strictSettings),
        .testTarget(
            name: "VMFSCoreTests", dependencies: ["VMFSCore", "VMFSTestSupport", "CVMFSLinux"], swiftSettings: strictSettings),
        .testTarget(
            name: "ToolTests",
            dependencies: ["VMFSCore", "VMFSTestSupport", "mkfs.vmfs", "fsck.vmfs", "vmfs", "vmfs-testhost", "vmfs-fuse"],
            swiftSettings: strictSettings),
        // Real FUSE mounts of real volumes by real daemon processes (needs root and /dev/fuse).
        // Helpers/ holds C programs the tests compile with the system compiler.
        .testTarget(
            name: "FuseTests", dependencies: ["VMFSCore", "VMFSFuse", "VMFSTestSupport", "vmfs-fuse", "mkfs.vmfs", "fsck.vmfs", "vmfs"],
            exclude: ["Helpers"], swiftSettings: strictSettings),
        // The host agent's library with real vmx processes and real VMs.
        .testTarget(
            name: "HostAgentTests", dependencies: ["HostAgent", "Hypervisor", "VMXProtocol", "VMXRuntime", "SystemSupport", "VMFSCore", "VMFSTestSupport", "LiveMigration",
                                                   "vmx", "mkfs.vmfs", "vmfs"],
            swiftSettings: strictSettings),
        // vmhostd processes as hosts in network namespaces (needs root, /dev/kvm, iproute2).
        .testTarget(
            name: "HostClusterTests",
            dependencies: ["VMFSCore", "VMFSTestSupport", "vmhostd", "vmx", "vmctl", "vmfs", "vmfs-fuse", "mkfs.vmfs"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "HypervisorTests", dependencies: ["Hypervisor", "SystemSupport", "vmctl"],
            swiftSettings: strictSettings),
        // Machine state save/restore and VMM-to-VMM migration in one process (needs /dev/kvm).
        .testTarget(
            name: "LiveMigrationTests", dependencies: ["LiveMigration", "Hypervisor", "SystemSupport", "VMFSTestSupport"],
            swiftSettings: strictSettings),
        // Virtual switches in network namespaces, without VMs: configuration, rules, shaping, uplinks.
        .testTarget(
            name: "HostNetworkingTests", dependencies: ["HostNetworking", "Hypervisor", "VMFSTestSupport", "SystemSupport", "CVMFSLinux"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "VirtualMachineTests", dependencies: ["VMManagement", "VMFSCore", "VMFSTestSupport", "Hypervisor", "vmctl", "mkfs.vmfs", "vmfs"],
            swiftSettings: strictSettings),
    ]
)
