// swift-tools-version: 6.1
import PackageDescription

// The fuzz build: libFuzzer targets over the project's own sources (docs/FUZZING.md).
//
// It is a package of its own so that the normal build never sees the fuzzer flags: Sources/
// holds symbolic links to the project's source folders, built here with
// `-sanitize=fuzzer,address` by Tools/scripts/fuzz.sh (scratch path .build-fuzz). Each
// Targets/NAME folder is one fuzz target, an executable whose `main` is libFuzzer's.

/// The project's strict settings (see ../Package.swift).
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// A fuzz target in Targets/`name`, built as the executable `fuzz-name`.
func fuzzTarget(_ name: String, dependencies: [Target.Dependency], exclude: [String] = []) -> Target {
    .executableTarget(name: "fuzz-\(name)", dependencies: dependencies + ["FuzzSupport", "VMFSTestSupport"], path: "Targets/\(name)",
                      exclude: exclude, swiftSettings: strictSettings)
}

let package = Package(
    name: "vmfs-fuzz",
    targets: [
        // ---- The project's modules (Sources/* link to ../Sources and ../Tests/TestSupport) ----
        .target(name: "CVMFSLinux", cSettings: [.define("_GNU_SOURCE")]),
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CKVM", cSettings: [.define("_GNU_SOURCE")]),
        .target(name: "SystemSupport", dependencies: ["CVMFSLinux"], swiftSettings: strictSettings),
        .target(name: "CISCSI", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary("iscsi")]),
        .target(name: "VMFSCore", dependencies: ["CVMFSLinux", "CURing", "CISCSI"], swiftSettings: strictSettings),
        .target(name: "Hypervisor", dependencies: ["CKVM", "CVMFSLinux", "SystemSupport"], swiftSettings: strictSettings),
        .target(name: "VMManagement", dependencies: ["VMFSCore", "Hypervisor"], swiftSettings: strictSettings),
        .target(name: "VMFSTestSupport", dependencies: ["VMFSCore"], swiftSettings: strictSettings),
        .target(name: "VMFSFuse", dependencies: ["VMFSCore", "CFuse"], swiftSettings: strictSettings),

        // ---- Harness support: input decoding, guarded devices, the seed volume, field edits ----
        .target(name: "FuzzSupport", dependencies: ["VMFSCore", "VMFSTestSupport", "CVMFSLinux"], path: "Support",
                swiftSettings: strictSettings),

        // ---- Fuzz targets ----
        fuzzTarget("decoders", dependencies: ["VMFSCore"]),
        fuzzTarget("journal-replay", dependencies: ["VMFSCore"]),
        fuzzTarget("volume-image", dependencies: ["VMFSCore"]),
        fuzzTarget("virtqueue", dependencies: ["Hypervisor", "SystemSupport"]),
        fuzzTarget("vm-files", dependencies: ["Hypervisor", "VMManagement"]),
        // vmfs-fuse's library (its operation table, called directly through `@testable import`).
        fuzzTarget("fuse-operations", dependencies: ["VMFSCore", "VMFSFuse", "CFuse"]),
    ]
)
