import Synchronization

/// The atomic sector update of lock records on a disk that only offers reads and writes: a
/// short Disk Paxos lease (Gafni–Lamport, as sanlock's paxos leases) on the record, then read,
/// compare, write, release.
///
/// Each lock record has a lease area: a leader sector and one ballot sector per heartbeat slot
/// (``PaxosLeader``, ``PaxosBallot``). A host takes the lease for instance k+1 (the leader holds
/// k) by a ballot with number b = round·2¹⁶ + slot + 1:
/// 1. write its ballot sector with mbal = b, keeping what it accepted in this instance;
/// 2. read the whole area: abort if another ballot of instance k+1 has a higher mbal (or the
///    leader moved on); take the value with the highest bal, or its own proposal if there is none;
/// 3. write its ballot sector with bal = mbal = b and that value; read the area again and abort
///    on a higher mbal. The value is then chosen: no other host can choose another one.
/// 4. The winner writes the leader (k+1, itself, held), reads the record, compares, writes it, and
///    writes the leader free. A host that finds instance k+1 chosen for another waits for the
///    leader to move to k+1; if it does not within 3T of learning the choice (the winner
///    stopped, or never learned it won), every write the winner could issue has landed, and the
///    host writes the leader (k+1, free).
///
/// Timing (the only assumption; safety of the choice itself needs none): every write is issued
/// within L = 2T of starting the ballot (T = the volume's I/O timeout) and lands within T. A lease
/// whose leader sector has not changed for L + T on the observer's monotonic clock has expired:
/// its holder can no longer write, and the next instance may be taken. A holder that finds L
/// passed gives up without writing (not even the leader), so a frozen host never writes late.
final class DiskPaxosSectorUpdate: AtomicSectorUpdate {
    let device: any BlockDevice
    let layout: VolumeLayout
    let volumeID: UInt64
    let statistics: ClusterIOStatistics
    /// This host's heartbeat slot and UUID (the proposer), nil while it has none.
    let proposer: @Sendable () -> (slot: Int, host: HostUUID)?
    let holdLimitNanoseconds: UInt64
    let expiryNanoseconds: UInt64
    /// How long one update may take before it fails (waiting out an expired lease included).
    let attemptLimitNanoseconds: UInt64
    private let size = FormatConstants.sectorSize
    private let maxHosts: Int
    /// Two threads of this host share its ballot sectors: one update of a record at a time.
    private let local = KeyedLocks<UInt64>()
    /// Leader sectors seen, and since when (monotonic ns) unchanged.
    private let observed = Mutex<[UInt64: (bytes: [UInt8], since: UInt64)]>([:])

    init(device: any BlockDevice, layout: VolumeLayout, volumeID: UInt64, statistics: ClusterIOStatistics, ioTimeoutMs: UInt32,
         proposer: @escaping @Sendable () -> (slot: Int, host: HostUUID)?) {
        self.device = device
        self.layout = layout
        self.volumeID = volumeID
        self.statistics = statistics
        self.proposer = proposer
        maxHosts = Int(layout.maxHosts)
        let t = UInt64(max(ioTimeoutMs, 10)) * 1_000_000
        holdLimitNanoseconds = 2 * t
        expiryNanoseconds = 3 * t
        attemptLimitNanoseconds = 30 * t
    }

    func read(at address: UInt64) throws(VMFSError) -> [UInt8] {
        statistics.countRead()
        return try device.read(count: size, at: address)
    }

    private func area(of address: UInt64) throws(VMFSError) -> UInt64 {
        let lockEnd = layout.lockOffset + UInt64(layout.lockCount) * UInt64(size)
        guard layout.paxosOffset != 0, address >= layout.lockOffset, address < lockEnd, (address - layout.lockOffset) % UInt64(size) == 0 else {
            throw VMFSError(.invalidArgument, "Disk Paxos protects lock records only; byte \(address) is not one",
                            location: .init(device: device.path, offset: address))
        }
        return layout.paxosArea(lock: Int((address - layout.lockOffset) / UInt64(size)))
    }

    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        guard let me = proposer() else {
            throw VMFSError(.fenced, "this host holds no heartbeat slot and cannot take a Disk Paxos lease")
        }
        let base = try area(of: address)
        return try local.withLock(address) { () throws(VMFSError) -> CompareAndWriteResult in
            let deadline = Clock.monotonicNanoseconds + attemptLimitNanoseconds
            var pause: UInt64 = 200_000
            // An instance this host saw chosen for another host, and when it learned that.
            var decidedElsewhere: (instance: UInt64, winner: PaxosProposal, learned: UInt64)?
            var collisions = 0
            while Clock.monotonicNanoseconds < deadline {
                let sectors = try readArea(base)
                let leaderBytes = sectors[0]
                let leader = try PaxosLeader.decode(leaderBytes, volumeID: volumeID, address: base, maxHosts: maxHosts)
                if leader.held && !hasExpired(leaderBytes, at: base) {
                    Clock.sleep(nanoseconds: pause)
                    pause = min(pause * 2, 5_000_000)
                    continue
                }
                if let decided = decidedElsewhere, decided.instance == leader.instance &+ 1 {
                    // The winner has not published its lease yet. Once 3T have passed since this host
                    // learned of the choice (made after the winner began its ballot), every write the
                    // winner may issue has landed: publish the instance as over, then compete for the next.
                    if Clock.monotonicNanoseconds - decided.learned >= expiryNanoseconds {
                        let over = PaxosLeader(instance: decided.instance, owner: decided.winner, held: false, ownerHost: .zero)
                        try writeSector(over.encoded(volumeID: volumeID, address: base), at: base)
                    } else {
                        Clock.sleep(nanoseconds: pause)
                        pause = min(pause * 2, 5_000_000)
                    }
                    continue
                }
                let started = Clock.monotonicNanoseconds
                let proposal = PaxosProposal(slot: me.slot, nonce: UInt64.random(in: 1...UInt64.max))
                switch try ballot(base: base, instance: leader.instance &+ 1, sectors: sectors, me: me, proposal: proposal) {
                case .retry:
                    // Dueling proposers abort each other: back off for a random number of ballot
                    // lengths, more after every collision, so one ballot gets through alone.
                    collisions += 1
                    let round = max(Clock.monotonicNanoseconds - started, 200_000)
                    Clock.sleep(nanoseconds: UInt64.random(in: 0...(round * UInt64(min(1 << min(collisions, 5), 32)))))
                case .chosen(let winner) where winner.slot != me.slot:
                    // Another host's proposal won this instance. Only the winner publishes it (a
                    // publication on its behalf could land after the winner's release and leave the
                    // lease looking held): wait for the leader to move on.
                    decidedElsewhere = (leader.instance &+ 1, winner, Clock.monotonicNanoseconds)
                case .chosen(let winner):
                    // This host's slot won (maybe through an earlier attempt of this host that a
                    // competitor's ballot carried on after it aborted: it wrote nothing but ballots).
                    if let result = try holdLease(base: base, instance: leader.instance &+ 1, proposal: winner, me: me, started: started,
                                                  address: address, expected: expected, new: new) {
                        statistics.countUpdate(mismatch: result != .written)
                        return result
                    }
                }
            }
            throw VMFSError(.timedOut, "the Disk Paxos lease on the lock record at byte \(address) could not be taken within "
                            + "\(attemptLimitNanoseconds / 1_000_000) ms", location: .init(device: device.path, offset: address))
        }
    }

    /// The lease is this host's: publish it, compare and write, release. Nil when L ran out
    /// first (nothing written; the lease expires on its own).
    private func holdLease(base: UInt64, instance: UInt64, proposal: PaxosProposal, me: (slot: Int, host: HostUUID), started: UInt64,
                           address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult? {
        func inTime() -> Bool { Clock.monotonicNanoseconds - started < holdLimitNanoseconds }
        var leader = PaxosLeader(instance: instance, owner: proposal, held: true, ownerHost: me.host)
        guard inTime() else { return nil }
        try writeSector(leader.encoded(volumeID: volumeID, address: base), at: base)
        let current = try read(at: address)
        let result: CompareAndWriteResult
        if current == expected {
            guard inTime() else { return nil }
            try writeSector(new, at: address)
            result = .written
        } else {
            result = .mismatch(current: current)
        }
        leader.held = false
        if inTime() { try writeSector(leader.encoded(volumeID: volumeID, address: base), at: base) }
        return result
    }

    private enum BallotResult {
        case retry
        case chosen(PaxosProposal)
    }

    /// One Disk Paxos ballot for `instance` (phases 1 and 2).
    private func ballot(base: UInt64, instance: UInt64, sectors: [[UInt8]], me: (slot: Int, host: HostUUID),
                        proposal: PaxosProposal) throws(VMFSError) -> BallotResult {
        let mine = ballotAddress(base, me.slot)
        var own = PaxosBallot.decode(sectors[1 + me.slot], volumeID: volumeID, address: mine, maxHosts: maxHosts)
        if own.instance != instance { own = PaxosBallot(instance: instance) }
        let highest = ballots(sectors, base: base, instance: instance).map(\.mbal).max() ?? 0
        let number = ((max(highest, own.mbal) >> 16) &+ 1) << 16 | UInt64(me.slot + 1)
        // Phase 1: announce the ballot, keep what was accepted.
        own.mbal = number
        own.writer = me.host
        own.version &+= 1
        try writeSector(own.encoded(volumeID: volumeID, address: mine), at: mine)
        let afterFirst = try readArea(base)
        guard let seen = check(afterFirst, base: base, instance: instance, number: number) else { return .retry }
        let value = seen.filter { $0.bal > 0 }.max(by: { $0.bal < $1.bal })?.value ?? proposal
        // Phase 2: accept the value.
        own.bal = number
        own.value = value
        own.version &+= 1
        try writeSector(own.encoded(volumeID: volumeID, address: mine), at: mine)
        let afterSecond = try readArea(base)
        guard check(afterSecond, base: base, instance: instance, number: number) != nil else { return .retry }
        return .chosen(value)
    }

    /// The ballots of `instance`, or nil when a higher ballot started or the leader moved on.
    private func check(_ sectors: [[UInt8]], base: UInt64, instance: UInt64, number: UInt64) -> [PaxosBallot]? {
        if let leader = try? PaxosLeader.decode(sectors[0], volumeID: volumeID, address: base, maxHosts: maxHosts),
           leader.instance >= instance { return nil }
        var current: [PaxosBallot] = []
        for slot in 0..<maxHosts {
            let ballot = PaxosBallot.decode(sectors[1 + slot], volumeID: volumeID, address: ballotAddress(base, slot), maxHosts: maxHosts)
            if ballot.instance > instance { return nil }
            guard ballot.instance == instance else { continue }
            if ballot.mbal > number { return nil }
            current.append(ballot)
        }
        return current
    }

    private func ballots(_ sectors: [[UInt8]], base: UInt64, instance: UInt64) -> [PaxosBallot] {
        (0..<maxHosts).map { PaxosBallot.decode(sectors[1 + $0], volumeID: volumeID, address: ballotAddress(base, $0), maxHosts: maxHosts) }
            .filter { $0.instance == instance }
    }

    private func ballotAddress(_ base: UInt64, _ slot: Int) -> UInt64 { base + UInt64(1 + slot) * UInt64(size) }

    /// The leader and every ballot sector, in one read.
    private func readArea(_ base: UInt64) throws(VMFSError) -> [[UInt8]] {
        let bytes = try device.read(count: (1 + maxHosts) * size, at: base)
        statistics.countRead(1 + maxHosts)
        return (0...maxHosts).map { Array(bytes[($0 * size)..<(($0 + 1) * size)]) }
    }

    private func writeSector(_ bytes: [UInt8], at address: UInt64) throws(VMFSError) {
        try device.write(bytes: bytes, at: address)
    }

    /// Whether the leader sector has stayed `bytes` for the expiry time on this host's clock.
    private func hasExpired(_ bytes: [UInt8], at address: UInt64) -> Bool {
        let now = Clock.monotonicNanoseconds
        return observed.withLock { seen in
            if let entry = seen[address], entry.bytes == bytes { return now - entry.since >= expiryNanoseconds }
            seen[address] = (bytes, now)
            return false
        }
    }
}
