/// The atomic sector update under a SCSI-2 reservation of the whole LUN (VMFS3's way):
/// RESERVE, read, compare, write, RELEASE.
///
/// - Bounded hold: the write is issued only within ``holdLimitNanoseconds`` of the RESERVE;
///   later, the attempt is abandoned (released, nothing written) and started again.
/// - A holder that died releases with its session (the target drops its I_T nexus). One that
///   hangs (frozen, partitioned) is broken by the first host that has met RESERVATION CONFLICT
///   for ``breakAfterNanoseconds`` without a change: a LOGICAL UNIT RESET drops the reservation.
/// - After a reset every initiator's next command gets a unit attention instead of running, so
///   a holder whose reservation was broken never completes its write: its read or write fails
///   with a unit attention, and the whole update starts again. Commands of this host are held
///   back while it holds the reservation, so that unit attention reaches the update's commands.
final class ReservationSectorUpdate: AtomicSectorUpdate {
    let storage: any SCSIStorage
    let fence: FenceState?
    let statistics: ClusterIOStatistics
    let holdLimitNanoseconds: UInt64
    let breakAfterNanoseconds: UInt64
    /// How long one update may take (conflicts, resets and retries included).
    let attemptLimitNanoseconds: UInt64
    private let size = FormatConstants.sectorSize

    /// - Parameter ioTimeoutMs: The volume's I/O timeout T. A reservation is broken after T/2 of
    ///   conflicts and must be used within T/4.
    init(storage: any SCSIStorage, fence: FenceState?, statistics: ClusterIOStatistics, ioTimeoutMs: UInt32) {
        self.storage = storage
        self.fence = fence
        self.statistics = statistics
        let t = UInt64(max(ioTimeoutMs, 40)) * 1_000_000
        breakAfterNanoseconds = t / 2
        holdLimitNanoseconds = t / 4
        attemptLimitNanoseconds = 10 * t
    }

    func read(at address: UInt64) throws(VMFSError) -> [UInt8] {
        statistics.countRead()
        return try storage.read(count: size, at: address)
    }

    /// An owner's update (a heartbeat renewal, a release of its own slot) takes no reservation:
    /// nobody else writes a slot whose owner still renews it (others take over only a slot that
    /// stayed silent for D, after its owner stopped writing), so read, compare and write suffice,
    /// and the LUN is reserved only for updates that compete.
    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8], ownerUpdate: Bool) throws(VMFSError) -> CompareAndWriteResult {
        guard ownerUpdate else { return try compareAndWrite(at: address, expected: expected, new: new) }
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        try fence?.checkWritable()
        let current = try read(at: address)
        guard current == expected else {
            statistics.countUpdate(mismatch: true)
            return .mismatch(current: current)
        }
        try storage.write(bytes: new, at: address)
        statistics.countUpdate(mismatch: false)
        return .written
    }

    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        let deadline = Clock.monotonicNanoseconds + attemptLimitNanoseconds
        var conflictSince: UInt64?
        var ambiguousWrite = false
        var pause: UInt64 = 200_000
        var lastProblem = "RESERVATION CONFLICT"
        while Clock.monotonicNanoseconds < deadline {
            try fence?.checkWritable()
            let outcome = try storage.withExclusiveAccess { () throws(VMFSError) -> Outcome in
                guard try storage.reserve() else { return .conflict }
                let reservedAt = Clock.monotonicNanoseconds
                defer { try? storage.release() }
                do throws(VMFSError) {
                    let current = try storage.readReserved(count: size, at: address)
                    statistics.countRead()
                    if ambiguousWrite && current == new { return .done(.written) }
                    guard current == expected else { return .done(.mismatch(current: current)) }
                    guard Clock.monotonicNanoseconds - reservedAt < holdLimitNanoseconds else { return .retry("held too long") }
                    try fence?.checkWritable()
                    do throws(VMFSError) {
                        try storage.writeReserved(new, at: address)
                    } catch where error.code == .io || error.code == .timedOut {
                        ambiguousWrite = true
                        throw error
                    }
                    return .done(.written)
                } catch where error.code == .busy || error.code == .io || error.code == .timedOut {
                    // A unit attention (a reset broke the reservation), a conflict or a dropped
                    // connection: the write did not happen under this reservation; start again.
                    return .retry(error.message)
                }
            }
            switch outcome {
            case .done(let result):
                statistics.countUpdate(mismatch: result != .written)
                return result
            case .retry(let why):
                lastProblem = why
                conflictSince = nil
            case .conflict:
                let now = Clock.monotonicNanoseconds
                if let since = conflictSince, now - since >= breakAfterNanoseconds {
                    // The holder kept the LUN reserved past any update's length: it is frozen or gone.
                    try storage.resetLogicalUnit()
                    conflictSince = nil
                    lastProblem = "reset the LUN to break a reservation held for \((now - since) / 1_000_000) ms"
                    continue
                }
                if conflictSince == nil { conflictSince = now }
            }
            Clock.sleep(nanoseconds: pause)
            pause = min(pause * 2, 5_000_000)
        }
        throw VMFSError(.timedOut, "the SCSI-2 reservation update of the sector at byte \(address) did not complete within "
                        + "\(attemptLimitNanoseconds / 1_000_000) ms (\(lastProblem))", location: .init(device: storage.path, offset: address))
    }

    private enum Outcome {
        case done(CompareAndWriteResult)
        case retry(String)
        case conflict
    }
}
