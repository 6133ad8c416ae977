import Foundation
import Testing
import VMFSTestSupport

/// Hosts in network namespaces, each with a vSwitch whose uplink is a veth into the lab's shared
/// "physical" bridge; test guests on them talk to each other and to host processes on client
/// machines through their port groups (docs/NETWORKING.md).
@Suite("Virtual networks across hosts", .serialized, .enabled(if: canRunCluster))
struct NetworkClusterTests {
    /// Guests on two hosts exchange ARP, ICMP and a UDP stream; a host process on a client
    /// machine pings a guest and streams to it; both sides' counters show the traffic.
    @Test func guestsOnTwoHostsTalkToEachOtherAndToAHostProcess() throws {
        let cluster = try TestCluster(hosts: 2, network: testNetwork)
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        try cluster.startGuest(on: h1, name: "responder", portGroup: "VM Network", workload: "netResponder",
                               arguments: [cluster.guestIPNumber(1), 7, 0])
        #expect(cluster.waitForNIC(h1, "responder"), "\(consoleText(h1, "responder"))")

        // A guest on the other host resolves it, pings it five times and streams 200 datagrams it echoes.
        try cluster.startGuest(on: h2, name: "sender", portGroup: "VM Network", workload: "udpSend",
                               arguments: [cluster.guestIPNumber(2), cluster.guestIPNumber(1), 7, 200, 64, 200_000, 2, 40000])
        #expect(eventually(seconds: 60) { consoleText(h2, "sender").contains("udp: sent 200") }, "\(consoleText(h2, "sender"))")
        let console = consoleText(h2, "sender")
        #expect(console.contains("icmp: 5 sent, 5 replies"), "\(console)")
        let echoed = console.split(separator: "\n").first { $0.hasPrefix("udp: sent 200 echoed") }.flatMap { Int($0.split(separator: " ").last ?? "") }
        #expect((echoed ?? 0) >= 198, "\(console)")   // a datagram or two may meet a full ring; the stream goes on

        // A host process on the client machine pings the guest and streams to its echo port.
        let ping = try cluster.ping(from: cluster.client(), cluster.guestIP(1))
        #expect(ping.stdout.contains("bytes from \(cluster.guestIP(1))"), "\(ping.output)")
        let tool = try nettool()
        let stream = try cluster.lab.run(in: cluster.client(), [tool, "echo", cluster.guestIP(1), "7", "200", "2"])
        let fields = nettoolFields(stream.stdout)
        #expect((fields["sent"] ?? 0) >= 390 && (fields["received"] ?? 0) >= (fields["sent"] ?? 0) - 2, "\(stream.output)")

        // The VMM and the host port counted it; nothing was malformed or filtered by policy.
        #expect(nicCounter(h1, "responder", "vmm", "receivedPackets") >= 600, "\(nicCounters(h1, "responder"))")
        #expect(nicCounter(h1, "responder", "vmm", "malformedChains") == 0)
        #expect(nicCounter(h1, "responder", "host", "forgedDropped") == 0)
        #expect(nicCounter(h2, "sender", "vmm", "transmittedPackets") >= 200)
    }

    /// Three hosts: guests in VLAN 10 on two of them reach each other over the tagged uplinks;
    /// a guest in VLAN 20 on the third, with the same addresses, gets no answer, and neither does
    /// the untagged client network.
    @Test func guestsReachEachOtherOnlyWithinTheirVLAN() throws {
        let cluster = try TestCluster(hosts: 3, network: testNetwork)
        try cluster.startAll()
        let (h1, h2, h3) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        try cluster.startGuest(on: h1, name: "ten", portGroup: "VLAN 10", workload: "netResponder", arguments: [cluster.guestIPNumber(1), 7, 0])
        #expect(cluster.waitForNIC(h1, "ten"))
        // The VLAN 20 guest asks for the same address first: it must not be answered.
        try cluster.startGuest(on: h3, name: "twenty", portGroup: "VLAN 20", workload: "udpSend",
                               arguments: [cluster.guestIPNumber(3), cluster.guestIPNumber(1), 7, 20, 64, 200_000, 0, 40000])
        try cluster.startGuest(on: h2, name: "also-ten", portGroup: "VLAN 10", workload: "udpSend",
                               arguments: [cluster.guestIPNumber(2), cluster.guestIPNumber(1), 7, 20, 64, 200_000, 2, 40000])
        #expect(eventually(seconds: 60) { consoleText(h2, "also-ten").contains("udp: sent 20") }, "\(consoleText(h2, "also-ten"))")
        #expect(consoleText(h2, "also-ten").contains("icmp: 5 sent, 5 replies"))
        #expect(consoleText(h2, "also-ten").contains("udp: sent 20 echoed 20"))
        // By now the VLAN 20 guest has asked many times; its requests left h3 tagged 20 and found no one.
        #expect(cluster.waitForNIC(h3, "twenty"))
        #expect(!consoleText(h3, "twenty").contains("resolved"), "\(consoleText(h3, "twenty"))")
        #expect(nicCounter(h3, "twenty", "vmm", "transmittedPackets") >= 5)
        #expect(nicCounter(h1, "ten", "vmm", "receivedPackets") >= 25)
        // The client network is untagged: VLAN 10 is not on it.
        let ping = try cluster.ping(from: cluster.client(), cluster.guestIP(1))
        #expect(!ping.stdout.contains("bytes from"), "\(ping.output)")
    }

    /// A guest sending with a forged source address: dropped on its host when its port group
    /// rejects forged transmits (and counted), delivered when the port group allows them.
    @Test func forgedTransmitsAreDroppedUnlessThePortGroupAllowsThem() throws {
        let cluster = try TestCluster(hosts: 1, network: testNetwork)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        let tool = try nettool()
        for (name, portGroup, delivered) in [("strict", "VM Network", false), ("open", "Open", true)] {
            let receiver = ReceivingProcess(cluster.lab.command(in: cluster.client(), [tool, "recv", "9", "12"]))
            try cluster.startGuest(on: h1, name: name, portGroup: portGroup, workload: "udpSend",
                                   arguments: [cluster.guestIPNumber(1), cluster.lab.guestAddress(cluster.client()), 9, 100, 64, 200_000, 1, 40000])
            #expect(eventually(seconds: 60) { consoleText(h1, name).contains("udp: sent 100") }, "\(consoleText(h1, name))")
            let fields = nettoolFields(receiver.wait())
            if delivered {
                #expect((fields["received"] ?? 0) >= 95, "\(fields)")
                #expect(nicCounter(h1, name, "host", "forgedDropped") == 0)
            } else {
                #expect(fields["received"] == 0, "\(fields)")
                #expect(nicCounter(h1, name, "host", "forgedDropped") >= 100, "\(nicCounters(h1, name))")
            }
            #expect(try h1.vmctl(["power-off", name]).status == 0)
        }
    }

    /// A port group shaped to 10 Mbit/s carries a guest that sends as fast as it can at that
    /// rate (±10 %), measured by a host process on the wire; the excess is dropped on the host.
    @Test func aShapedPortGroupCarriesTheGuestsStreamAtItsRate() throws {
        let cluster = try TestCluster(hosts: 1, network: testNetwork)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        let tool = try nettool()
        let receiver = ReceivingProcess(cluster.lab.command(in: cluster.client(), [tool, "recv", "9", "12"]))
        try cluster.startGuest(on: h1, name: "shaped", portGroup: "Shaped", workload: "udpSend",
                               arguments: [cluster.guestIPNumber(1), cluster.lab.guestAddress(cluster.client()), 9, 0, 1472, 0, 0, 40000])
        let fields = nettoolFields(receiver.wait())
        let rate = fields["l2_bits_per_second"] ?? 0
        #expect(rate >= 9_000_000 && rate <= 11_000_000, "\(fields)")
        #expect((fields["seconds"] ?? 0) >= 4, "\(fields)")
        #expect(nicCounter(h1, "shaped", "host", "shapingDropped") > 0, "\(nicCounters(h1, "shaped"))")
    }
}

/// A program run to completion on a thread of its own (a receiver started before its sender).
final class ReceivingProcess: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var output = ""

    init(_ command: [String]) {
        Thread.detachNewThread { [self] in
            let result = try? runSystem(command[0], Array(command.dropFirst()), timeout: 120)
            lock.withLock { output = result?.output ?? "" }
            done.signal()
        }
    }

    /// Its output, once it exited.
    func wait() -> String {
        done.wait()
        return lock.withLock { output }
    }
}
