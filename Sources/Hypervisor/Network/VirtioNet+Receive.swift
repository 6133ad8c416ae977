internal import Synchronization
internal import SystemSupport
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// The receive thread: frames from the port into the guest's receive buffers.
extension VirtioNet {
    /// A receive chain taken from the ring, checked, with the generation it belongs to.
    struct ReceiveBuffer {
        var head: UInt16
        var buffers: ChainBuffers
    }

    /// Most chains taken from the ring at once, and most frames handled per wakeup.
    static let receiveBatch = 64

    func receiveLoop() {
        let capacity = NetworkPort.headerSize + VirtioNetProtocol.maximumFrame
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { frame.deallocate() }
        var held: [ReceiveBuffer] = []
        var heldGeneration = gate.generation
        var pending = 0   // bytes of a frame read but not yet delivered (waiting for buffers)
        while !schedule.withLock({ $0.stopping }) {
            let armed = gate.isArmed
            if gate.generation != heldGeneration {
                // The driver reset the device: chains and a frame taken before belong to the old rings.
                held.removeAll()
                heldGeneration = gate.generation
                pending = 0
            }
            let linkUp = settings.withLock { $0.linkUp }
            if armed && linkUp && held.isEmpty { held += takeReceiveBuffers(generation: heldGeneration) }
            // Poll the port when frames can go somewhere (or must be discarded: link down); else
            // wait for the driver to post buffers (its notify) or for a change of state.
            let watchPort = armed && (!linkUp || (!held.isEmpty && pending == 0))
            var portReady: Int32 = 0, wakeReady: Int32 = 0
            _ = cvmfs_poll_two(watchPort ? port.pollDescriptor : -1, receiveWake.rawValue, -1, &portReady, &wakeReady)
            if wakeReady != 0 { drainReceiveWake() }
            guard armed else { continue }
            if !linkUp {
                discardWaitingFrames(into: frame)
                continue
            }
            var completions: [(head: UInt16, written: UInt32)] = []
            var frames = 0
            _ = gate.run { generation in
                guard generation == heldGeneration else { return }
                while frames < Self.receiveBatch {
                    if pending == 0 {
                        let n = port.receive(into: frame)
                        guard n > 0 else { break }
                        pending = n
                    }
                    if held.isEmpty { held += takeReceiveBuffers(generation: generation) }
                    guard deliver(UnsafeRawBufferPointer(rebasing: frame[0..<pending]), held: &held, completions: &completions) else {
                        break   // not enough buffers: keep the frame until the driver posts more
                    }
                    pending = 0
                    frames += 1
                }
                transport?.complete(queue: VirtioNetProtocol.receiveQueue, completions)
            }
        }
    }

    /// Takes receive chains; malformed ones go back at once with nothing written.
    private func takeReceiveBuffers(generation: UInt64) -> [ReceiveBuffer] {
        guard let transport else { return [] }
        var buffers: [ReceiveBuffer] = []
        var rejected: [(head: UInt16, written: UInt32)] = []
        let limit = VirtioNetProtocol.mergeableHeaderSize + VirtioNetProtocol.maximumFrame + 4096
        for entry in transport.takeAvailable(queue: VirtioNetProtocol.receiveQueue, limit: Self.receiveBatch) {
            switch entry {
            case .chain(let chain):
                if let checked = ChainBuffers(chain, writable: true, memory: memory, limit: limit), checked.total > 0 {
                    buffers.append(ReceiveBuffer(head: chain.head, buffers: checked))
                } else {
                    rejected.append((chain.head, 0))
                }
            case .malformed(let head, _):
                rejected.append((head, 0))
            }
        }
        if !rejected.isEmpty {
            count { $0.malformedChains += UInt64(rejected.count) }
            transport.complete(queue: VirtioNetProtocol.receiveQueue, rejected)
        }
        return buffers
    }

    /// Puts one header + frame from the port into the guest's buffers. Returns false when more
    /// buffers are needed (nothing was consumed); true when the frame was delivered or dropped.
    private func deliver(_ record: UnsafeRawBufferPointer, held: inout [ReceiveBuffer],
                         completions: inout [(head: UInt16, written: UInt32)]) -> Bool {
        typealias P = VirtioNetProtocol
        guard record.count >= NetworkPort.headerSize + P.minimumFrame else {
            count { $0.receiveDropped += 1 }
            return true
        }
        let payload = UnsafeRawBufferPointer(rebasing: record[NetworkPort.headerSize...])
        let (mac, filter, features) = settings.withLock { ($0.mac, $0.filter, $0.features) }
        guard let destination = MACAddress(bytes: payload[0..<6]), filter.accepts(destination: destination, own: mac) else {
            count { $0.receiveFiltered += 1 }
            return true
        }
        guard var header = VirtioNetHeader(Array(record[0..<NetworkPort.headerSize])).sanitizedForReceive(negotiated: features) else {
            count { $0.receiveDropped += 1 }
            return true
        }
        let mergeable = features & P.featureMergeableReceiveBuffers != 0
        let headerSize = mergeable ? P.mergeableHeaderSize : P.headerSize
        let needed = headerSize + payload.count
        // Without mergeable buffers the frame must fit the first chain; with them, as many chains as it takes.
        var chains = 0
        if mergeable {
            var capacity = 0
            while capacity < needed {
                guard chains < held.count else { return false }
                capacity += held[chains].buffers.total
                chains += 1
            }
        } else {
            guard let first = held.first else { return false }
            guard first.buffers.total >= needed else {
                count { $0.receiveDropped += 1 }
                return true
            }
            chains = 1
        }
        header.bufferCount = mergeable ? UInt16(chains) : 0
        let headerBytes = header.encoded(size: headerSize)
        var written = 0
        for index in 0..<chains {
            let buffers = held[index].buffers
            var used = 0
            if index == 0 {
                used = headerBytes.withUnsafeBytes { buffers.scatter($0, at: 0) }
            }
            let take = min(buffers.total - used, payload.count - written)
            used += buffers.scatter(UnsafeRawBufferPointer(rebasing: payload[written..<(written + take)]), at: used)
            written += take
            completions.append((held[index].head, UInt32(used)))
        }
        held.removeFirst(chains)
        count {
            $0.receivedPackets += 1
            $0.receivedBytes += UInt64(payload.count)
        }
        return true
    }

    /// Link down: frames waiting on the port are read and dropped (nothing stale arrives later).
    private func discardWaitingFrames(into frame: UnsafeMutableRawBufferPointer) {
        var dropped: UInt64 = 0
        while port.receive(into: frame) > 0 { dropped += 1 }
        if dropped > 0 { count { $0.receiveDropped += dropped } }
    }
}
