import Foundation
import Testing
@testable import VMFSCore

/// A host handing its membership over to its next incarnation (a restarting host agent that
/// leaves its VMs running) and the next incarnation adopting its file locks.
@Suite("Membership hand-over")
struct HandOverTests {
    @Test func handedOverSessionWritesNothingAndTheNextIncarnationAdoptsItsFiles() throws {
        // Regression: a handle left open at the hand-over (the agent's disk channel of a VM it
        // leaves running) could still write, and a write after the write window renewed the
        // heartbeat slot the next incarnation was reclaiming: its reclaim failed as "active from
        // another machine", or the old session found the slot taken and reported the membership
        // lost, whose handler stopped the VMs being adopted.
        let device = try makeMemoryVolume()
        var options = hostOptions("host-a")
        options.adoptFileLocks = true
        let first = try Volume.mount(device: device, options: options)
        let handle = try first.create("disk", access: .readWrite)
        let written = pattern(8192, seed: 7)
        try handle.write(bytes: written, at: 0)
        try first.handOver()

        // Past the write window, where a write would first renew the heartbeat slot.
        Thread.sleep(forTimeInterval: Double(fastTiming.writeWindowNanoseconds) / 1e9 + 0.1)
        do {
            try handle.write(bytes: pattern(8192, seed: 8), at: 0)
            Issue.record("a handle of a handed-over membership wrote")
        } catch {
            #expect(error.code == .staleHandle, "\(error)")
        }

        // The next incarnation reclaims the slot; the adopted lock becomes the reopened file's.
        let second = try Volume.mount(device: device, options: options)
        let reopened = try second.open("disk", access: .readWrite)
        try second.finishAdoption()
        #expect(try reopened.read(count: written.count, at: 0) == written)
        try reopened.write(bytes: pattern(4096, seed: 9), at: 8192)
        try reopened.close()
        try second.unmount()

        var check = CheckOptions()
        check.force = true
        let report = VolumeChecker(device: device.readOnlyView(), options: check).run()
        #expect(report.exitCode == 0, "\(report.problems.map(\.message))")
    }
}
