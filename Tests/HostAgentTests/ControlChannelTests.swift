import Testing
import SystemSupport
import VMXProtocol
#if canImport(Glibc)
import Glibc
#endif

@Suite("VMM control channel")
struct ControlChannelTests {
    /// A VMM that sends its stop report and exits while a message of the agent lies unread in its
    /// socket: the kernel reports the reset to the agent before the frames still queued for it.
    /// The agent must read the stop report, then the end of the stream (a lost report made the
    /// agent take a guest power-off for a crash).
    @Test func framesSentBeforeTheResetArriveBeforeTheEnd() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        let agent = ControlChannel(socket: OwnedDescriptor(pair[0]))
        let vmm = ControlChannel(socket: OwnedDescriptor(pair[1]))
        try agent.send(.powerOff)  // never read by the VMM
        let report = StateChange(state: .stopped, reason: "the guest powered off", guestStatus: 0, monotonicNanoseconds: 1)
        try vmm.send(.stateChanged(report))
        vmm.socket.close()
        #expect(try agent.receive(timeoutMilliseconds: 1000)?.message == .stateChanged(report))
        #expect(try agent.receive(timeoutMilliseconds: 1000) == nil)
    }
}
