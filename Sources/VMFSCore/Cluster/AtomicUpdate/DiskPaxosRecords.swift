/// The sectors of a Disk Paxos lease area (docs/FORMAT.md §10b). Each lock record has one area:
/// a leader sector, then one ballot sector per heartbeat slot (the slot's host is the only
/// writer of its ballot sector).

/// Who a ballot proposes as the lease owner: a heartbeat slot (the owner: whichever attempt of that
/// slot's host sees the choice holds the lease) and a random nonce telling attempts apart.
struct PaxosProposal: Sendable, Equatable {
    var slot: Int
    var nonce: UInt64
}

/// The leader sector: the last decided instance and whether its owner still holds the lease.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | common header, magic `PXLD` |
/// | 32 | 8 | instance (the lease version, +1 per acquisition) |
/// | 40 | 2 | owner's heartbeat slot |
/// | 42 | 1 | state: 0 free, 1 held |
/// | 48 | 8 | owner's nonce |
/// | 56 | 16 | owner host UUID (display) |
struct PaxosLeader: Sendable, Equatable {
    var instance: UInt64 = 0
    var owner = PaxosProposal(slot: 0, nonce: 0)
    var held = false
    var ownerHost: HostUUID = .zero

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.paxosLeader, volumeID: volumeID, address: address, version: instance) { w in
            w.put(instance, at: 32)
            w.put(UInt16(truncatingIfNeeded: owner.slot), at: 40)
            w.put(UInt8(held ? 1 : 0), at: 42)
            w.put(owner.nonce, at: 48)
            w.put(uuid: ownerHost, at: 56)
        }
    }

    static func decode(_ bytes: [UInt8], volumeID: UInt64, address: UInt64, maxHosts: Int) throws(VMFSError) -> PaxosLeader {
        switch try SectorCodec.open(bytes, magic: .paxosLeader, volumeID: volumeID, address: address, structure: "Disk Paxos leader") {
        case .pristine:
            return PaxosLeader()
        case .valid(let r, _):
            guard Int(r.u16(40)) < maxHosts, r.u8(42) <= 1 else {
                throw VMFSError(.corrupt, "Disk Paxos leader names slot \(r.u16(40)) or state \(r.u8(42))",
                                location: .init(structure: "Disk Paxos leader", offset: address + 40))
            }
            return PaxosLeader(instance: r.u64(32), owner: PaxosProposal(slot: Int(r.u16(40)), nonce: r.u64(48)),
                               held: r.u8(42) == 1, ownerHost: r.uuid(at: 56))
        }
    }
}

/// One host's ballot sector (Gafni–Lamport's `dblock[p]`).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 32 | common header, magic `PXBL` |
/// | 32 | 8 | instance the ballot is for |
/// | 40 | 8 | mbal: the highest ballot number this host has started |
/// | 48 | 8 | bal: the ballot number of the value it accepted (0: none) |
/// | 56 | 2 | inp: the accepted value's slot |
/// | 64 | 8 | inp: the accepted value's nonce |
/// | 72 | 16 | writer host UUID (display) |
struct PaxosBallot: Sendable, Equatable {
    var instance: UInt64 = 0
    var mbal: UInt64 = 0
    var bal: UInt64 = 0
    var value = PaxosProposal(slot: 0, nonce: 0)
    var writer: HostUUID = .zero
    var version: UInt64 = 0

    func encoded(volumeID: UInt64, address: UInt64) -> [UInt8] {
        SectorCodec.make(.paxosBallot, volumeID: volumeID, address: address, version: version) { w in
            w.put(instance, at: 32)
            w.put(mbal, at: 40)
            w.put(bal, at: 48)
            w.put(UInt16(truncatingIfNeeded: value.slot), at: 56)
            w.put(value.nonce, at: 64)
            w.put(uuid: writer, at: 72)
        }
    }

    /// A damaged ballot sector reads as empty: its writer rewrites it in its next phase, and it
    /// never decided anything another host relies on unless a later phase read it intact.
    static func decode(_ bytes: [UInt8], volumeID: UInt64, address: UInt64, maxHosts: Int) -> PaxosBallot {
        guard case .valid(let r, let version)? = try? SectorCodec.open(bytes, magic: .paxosBallot, volumeID: volumeID, address: address,
                                                                        structure: "Disk Paxos ballot"),
              Int(r.u16(56)) < maxHosts else { return PaxosBallot() }
        return PaxosBallot(instance: r.u64(32), mbal: r.u64(40), bal: r.u64(48),
                           value: PaxosProposal(slot: Int(r.u16(56)), nonce: r.u64(64)), writer: r.uuid(at: 72), version: version)
    }
}
