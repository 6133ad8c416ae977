import ArgumentParser

/// `vmfs-bench`: the measurements behind `Tools/scripts/bench-core.sh` and `bench-cluster.sh`.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmfs-bench",
        abstract: "Measure VMFSCore throughput and cluster lock timings (benchmarks, not tests).",
        subcommands: [CoreThroughput.self, LockLatency.self, DeathDetection.self])
}

Bench.main()
