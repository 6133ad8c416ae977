internal import Synchronization
internal import SystemSupport

/// The transmit thread: the guest's frames to the port, the control queue, and announcements.
extension VirtioNet {
    /// Most chains taken from the transmit ring per round (then the ring is looked at again).
    static let transmitBatch = 256

    func transmitLoop() {
        var seenKicks: UInt64 = 0
        while true {
            let (stopping, due) = waitForTransmitWork(seenKicks: &seenKicks)
            if stopping { return }
            if due > 0 { sendAnnouncements(rounds: due) }
            _ = gate.run { _ in
                serveControlQueue()
                while serveTransmitQueue() == Self.transmitBatch {}
            }
        }
    }

    /// Waits for a notify, a due announcement or the stop; returns whether to stop and how many
    /// announcement rounds are due.
    private func waitForTransmitWork(seenKicks: inout UInt64) -> (stopping: Bool, dueAnnouncements: Int) {
        while true {
            let now = MonotonicClock.nanoseconds
            let next = schedule.withLock { $0.announcements.first }
            let deadline: UInt64? = next.map { max($0, now) }
            let kicks = seenKicks
            let result = schedule.wait(until: deadline, for: { s in
                s.stopping || s.kicks != kicks || (s.announcements.first.map { $0 <= MonotonicClock.nanoseconds } ?? false)
            }) { s -> (Bool, Int, UInt64) in
                let now = MonotonicClock.nanoseconds
                let due = s.announcements.prefix { $0 <= now }.count
                s.announcements.removeFirst(due)
                return (s.stopping, due, s.kicks)
            }
            if let (stopping, due, kicks) = result {
                seenKicks = kicks
                return (stopping, due)
            }
        }
    }

    /// Sends the guest's frames; returns how many chains it took.
    private func serveTransmitQueue() -> Int {
        guard let transport else { return 0 }
        let chains = transport.takeAvailable(queue: VirtioNetProtocol.transmitQueue, limit: Self.transmitBatch)
        guard !chains.isEmpty else { return 0 }
        let (features, linkUp, mac) = settings.withLock { ($0.features, $0.linkUp, $0.mac) }
        var completions: [(head: UInt16, written: UInt32)] = []
        completions.reserveCapacity(chains.count)
        for entry in chains {
            switch entry {
            case .chain(let chain):
                transmit(chain, features: features, linkUp: linkUp, mac: mac)
                completions.append((chain.head, 0))
            case .malformed(let head, _):
                count { $0.malformedChains += 1 }
                completions.append((head, 0))
            }
        }
        transport.complete(queue: VirtioNetProtocol.transmitQueue, completions)
        return chains.count
    }

    /// Sends one frame: header checked against the negotiated features, payload gathered straight
    /// from guest memory.
    private func transmit(_ chain: DescriptorChain, features: UInt32, linkUp: Bool, mac: MACAddress) {
        typealias P = VirtioNetProtocol
        let headerSize = features & P.featureMergeableReceiveBuffers != 0 ? P.mergeableHeaderSize : P.headerSize
        guard let buffers = ChainBuffers(chain, writable: false, memory: memory, limit: headerSize + P.maximumFrame),
              buffers.total >= headerSize + P.minimumFrame else {
            count { $0.malformedChains += 1 }
            return
        }
        guard linkUp, let header = VirtioNetHeader(buffers.gather(offset: 0, count: headerSize)).sanitizedForTransmit(negotiated: features) else {
            count { $0.transmitDropped += 1 }
            return
        }
        // Remember the guest's IPv4 address from its own ARP packets, for gratuitous ARP.
        let start = buffers.gather(offset: headerSize, count: 42)
        if let address = Announcement.senderIPv4(ofARP: start, from: mac) {
            settings.withLock { $0.guestIPv4 = address }
        }
        let frameLength = buffers.total - headerSize
        let sent = header.encoded().withUnsafeBytes { port.transmit(header: $0, segments: buffers.views(from: headerSize)) }
        count {
            if sent < 0 {
                $0.transmitDropped += 1
            } else {
                $0.transmittedPackets += 1
                $0.transmittedBytes += UInt64(frameLength)
            }
        }
    }

    /// One announcement round: a RARP and, when the guest's address is known, a gratuitous ARP.
    private func sendAnnouncements(rounds: Int) {
        let (mac, address, linkUp) = settings.withLock { ($0.mac, $0.guestIPv4, $0.linkUp) }
        guard linkUp else { return }
        var frames = [Announcement.reverseARP(from: mac)]
        if let address { frames.append(Announcement.gratuitousARP(from: mac, address: address)) }
        let header = VirtioNetHeader().encoded()
        var sent: UInt64 = 0
        for frame in frames {
            let result = header.withUnsafeBytes { headerBytes in
                frame.withUnsafeBytes { port.transmit(header: headerBytes, segments: [$0]) }
            }
            if result > 0 { sent += 1 }
        }
        count { $0.announcements += sent }
    }
}
