import Foundation
import Testing
import SystemSupport
import VMXProtocol
@testable import VMXRuntime
#if canImport(Glibc)
import Glibc
#endif

@Suite("VMM outbox")
struct OutboxTests {
    /// Closing the outbox waits for the batch being sent, not only for the queues to empty: the
    /// VMM exits right after, and its stop report was in that batch (the agent then took a guest
    /// power-off for a crash).
    @Test func closeWaitsForTheBatchBeingSent() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        let agent = ControlChannel(socket: OwnedDescriptor(pair[0]))
        let outbox = try Outbox()
        // Queued before the agent connects, so that the sender takes them as one batch: more than
        // the socket buffer holds, so it blocks in the middle of it, with the stop report last.
        let filler = ControlMessage.consoleOutput([UInt8](repeating: 0x41, count: 1000))
        for _ in 0..<1000 { outbox.send(filler) }
        let report = StateChange(state: .stopped, reason: "the guest powered off", guestStatus: 0, monotonicNanoseconds: 1)
        outbox.send(.stateChanged(report))
        outbox.connect(ControlChannel(socket: OwnedDescriptor(pair[1])))
        usleep(200_000)
        let closed = DispatchSemaphore(value: 0)
        let closer = Thread { outbox.close(timeoutNanoseconds: 10_000_000_000); closed.signal() }
        closer.start()
        usleep(300_000)
        #expect(closed.wait(timeout: .now()) == .timedOut, "close returned while the stop report was still to be sent")
        var sawReport = false
        while !sawReport, let received = try agent.receive(timeoutMilliseconds: 5000) {
            sawReport = received.message == .stateChanged(report)
        }
        #expect(sawReport)
        #expect(closed.wait(timeout: .now() + 5) == .success)
    }
}
