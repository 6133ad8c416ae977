import Synchronization

/// The one primitive cluster coordination rests on: replace one 4 KiB sector only if it still
/// holds what the caller last saw, atomically with respect to every other host.
///
/// VMFS gets this from the storage (SCSI-2 RESERVE/RELEASE, or ATS COMPARE AND WRITE on one
/// sector). Backends:
/// - ``RangeLockSectorUpdate``: OFD byte-range locks on the device (`F_OFD_SETLKW`); correct for
///   every process that shares one kernel (image files, loop devices), which is what runs here.
/// - ``CompareAndWriteSectorUpdate``: SCSI COMPARE AND WRITE (ATS) on a LUN.
/// - ``ReservationSectorUpdate``: SCSI-2 RESERVE/RELEASE around read, compare, write.
/// - ``DiskPaxosSectorUpdate`` (lock records) and ``DeltaLeaseSectorUpdate`` (heartbeat slots):
///   plain reads and writes, as sanlock's paxos and delta leases.
/// The volume header names the method (``AtomicUpdateMethod``); callers only see this protocol.
public protocol AtomicSectorUpdate: Sendable {
    /// Reads the sector at `address` (one device read).
    func read(at address: UInt64) throws(VMFSError) -> [UInt8]
    /// Writes `new` at `address` if the sector currently equals `expected` (one atomic update).
    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult
    /// The same, saying whether the writer owns the sector now (a heartbeat renewal, a release):
    /// methods that must otherwise wait out competing writers (delta leases) need not.
    func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8], ownerUpdate: Bool) throws(VMFSError) -> CompareAndWriteResult
}

extension AtomicSectorUpdate {
    public func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8], ownerUpdate: Bool) throws(VMFSError) -> CompareAndWriteResult {
        try compareAndWrite(at: address, expected: expected, new: new)
    }
}

/// The outcome of a compare-and-write.
public enum CompareAndWriteResult: Sendable, Equatable {
    /// The sector held the expected bytes and now holds the new ones.
    case written
    /// The sector held other bytes (returned); nothing was written.
    case mismatch(current: [UInt8])
}

/// Counts of cluster I/O, for benchmarks and for `vmfs` diagnostics.
public final class ClusterIOStatistics: Sendable {
    private let counters = Mutex<Counts>(Counts())

    /// A snapshot of the counters.
    public struct Counts: Sendable, Equatable {
        /// Plain sector reads made for locks and heartbeats.
        public var sectorReads = 0
        /// Atomic updates attempted.
        public var atomicUpdates = 0
        /// Atomic updates that found other bytes than expected.
        public var mismatches = 0
    }

    public init() {}

    /// The current counts.
    public var counts: Counts { counters.withLock { $0 } }

    func countRead(_ count: Int = 1) { counters.withLock { $0.sectorReads += count } }
    func countUpdate(mismatch: Bool) {
        counters.withLock {
            $0.atomicUpdates += 1
            if mismatch { $0.mismatches += 1 }
        }
    }
}

/// Compare-and-write emulated with an OFD write lock on the sector's byte range: lock, read,
/// compare, write, unlock. Other processes (and other opens in this process) block on the lock.
public final class RangeLockSectorUpdate: AtomicSectorUpdate {
    let device: any BlockDevice
    let statistics: ClusterIOStatistics
    private let size = FormatConstants.sectorSize

    public init(device: any BlockDevice, statistics: ClusterIOStatistics = ClusterIOStatistics()) {
        self.device = device
        self.statistics = statistics
    }

    public func read(at address: UInt64) throws(VMFSError) -> [UInt8] {
        statistics.countRead()
        return try device.read(count: size, at: address)
    }

    public func compareAndWrite(at address: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        precondition(new.count == size && expected.count == size, "compare-and-write works on whole sectors")
        try device.lockRange(offset: address, length: UInt64(size))
        defer { device.unlockRange(offset: address, length: UInt64(size)) }
        let current = try device.read(count: size, at: address)
        guard current == expected else {
            statistics.countUpdate(mismatch: true)
            return .mismatch(current: current)
        }
        try device.write(bytes: new, at: address)
        statistics.countUpdate(mismatch: false)
        return .written
    }
}
