import ArgumentParser

/// `vmfs-testhost`: one cluster host running a scripted workload, for the test suite and the
/// benchmarks. Every test "host" is a real process with its own host identity.
struct TestHost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmfs-testhost",
        abstract: "Run a workload against a VMFS volume as one cluster host (tests and benchmarks).",
        subcommands: [CrashWorkload.self, Counter.self, AllocationWriter.self, Hold.self, LockBenchmark.self, FenceStatus.self])
}

TestHost.main()
