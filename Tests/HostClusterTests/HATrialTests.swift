import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// Fifty failure trials in a loop: kill a random member (agent and VMMs), let HA act, bring the
/// member back; after each trial every VM runs exactly once and the disk counters of all VMs show
/// no double run and no lost VM.
@Suite("HA: fifty failure trials", .serialized, .enabled(if: canRunCluster))
struct HATrialTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &+ 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    @Test func fiftyRandomHostFailuresLoseNoVMAndRunNoneTwice() throws {
        let trials = Int(ProcessInfo.processInfo.environment["HA_TRIALS"] ?? "") ?? 50
        let seed = UInt64(ProcessInfo.processInfo.environment["HA_TRIAL_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        print("HA trials: \(trials), seed \(seed) (HA_TRIAL_SEED=\(seed) repeats this run)")
        var random = Generator(state: seed)
        let names = HAFailureTests.names
        let lab = try HAFailureTests.sixVMs(deadMs: 1000, heartbeatMs: 125)
        var recoveries: [Double] = []
        for trial in 1...trials {
            let victim = lab.hosts[Int(random.next() % UInt64(lab.hosts.count))]
            let survivors = lab.hosts.filter { $0 !== victim }
            let moving = HAFailureTests.vms(on: victim, lab)
            let before = try lab.sequences(names, through: survivors[0])
            lab.crash(victim)
            let crashed = Date()
            let recovered = eventually(seconds: 30) { lab.allRunningOnce(names, among: survivors) }
            #expect(recovered, "trial \(trial): after killing \(victim.name): \(lab.placements(names))")
            guard recovered else { break }
            recoveries.append(Date().timeIntervalSince(crashed))
            lab.restarted(moving)
            // Every VM makes progress, and no disk shows a double run or a wrong boot count.
            let progressed = try eventually(seconds: 30) {
                try lab.sequences(names, through: survivors[0]).allSatisfy { $0.value > (before[$0.key] ?? 0) + 5 }
            }
            #expect(progressed, "trial \(trial): a VM stopped writing")
            let problems = try lab.checkDisks(names, through: survivors[0])
            #expect(problems.isEmpty, "trial \(trial): \(problems)")
            guard progressed, problems.isEmpty else { break }
            try victim.start()
            // The member comes back with nothing running: its old VMs run elsewhere.
            #expect(eventually(seconds: 10) { lab.allRunningOnce(names) }, "trial \(trial): \(lab.placements(names))")
            #expect(lab.liveVMMs().count == names.count, "trial \(trial): live VMMs \(lab.liveVMMs())")
        }
        let sorted = recoveries.sorted()
        if !sorted.isEmpty {
            print(String(format: "HA trials: %d done; all VMs running again after %.2f s median, %.2f s max (D = 1 s)",
                         sorted.count, sorted[sorted.count / 2], sorted.last ?? 0))
        }
        #expect(recoveries.count == trials)
    }
}
