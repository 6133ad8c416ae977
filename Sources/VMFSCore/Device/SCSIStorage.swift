/// A shared LUN that takes SCSI commands besides reads and writes: what the ATS and SCSI-2
/// reservation backends of the atomic sector update and persistent-reservation fencing use.
///
/// ``ISCSIBlockDevice`` is the implementation; backends see only this protocol.
public protocol SCSIStorage: BlockDevice {
    /// The LUN, without credentials (`iscsi://host:port/iqn/lun`), for messages and `vmfs info`.
    var targetDescription: String { get }
    /// The LUN's logical block size in bytes.
    var logicalBlockSize: Int { get }
    /// How long one command may take, retries and reconnects included, before it fails.
    var commandTimeoutMilliseconds: UInt32 { get }
    /// Sets ``commandTimeoutMilliseconds`` (a mounted volume uses its I/O timeout T).
    func setCommandTimeout(milliseconds: UInt32)

    // MARK: ATS

    /// COMPARE AND WRITE of whole logical blocks at `offset`: writes `new` if the blocks hold
    /// `expected`, atomically at the target.
    func compareAndWrite(at offset: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult
    /// Whether the LUN executes COMPARE AND WRITE: tries one on `offset` that rewrites what is there.
    func probeCompareAndWrite(at offset: UInt64) throws(VMFSError) -> SCSIProbe

    // MARK: SCSI-2 reservations

    /// RESERVE(6) of the whole LUN. Returns false on RESERVATION CONFLICT (another initiator holds it).
    func reserve() throws(VMFSError) -> Bool
    /// RELEASE(6).
    func release() throws(VMFSError)
    /// LOGICAL UNIT RESET: breaks a reservation whose holder stopped; every initiator gets a unit attention.
    func resetLogicalUnit() throws(VMFSError)
    /// Reads under a held reservation: a unit attention (a reset broke the reservation) fails with
    /// ``VMFSError/Code/busy`` instead of being retried.
    func readReserved(count: Int, at offset: UInt64) throws(VMFSError) -> [UInt8]
    /// Writes under a held reservation; a unit attention fails with ``VMFSError/Code/busy`` and nothing was written.
    func writeReserved(_ bytes: [UInt8], at offset: UInt64) throws(VMFSError)
    /// Runs `body` while no other command of this host is in flight on the LUN (so the next unit
    /// attention after a reset reaches `body`'s commands).
    func withExclusiveAccess<T>(_ body: () throws(VMFSError) -> T) throws(VMFSError) -> T

    // MARK: SPC-3 persistent reservations

    /// Whether the LUN supports persistent reservations (REPORT CAPABILITIES answered).
    func probePersistentReservations() throws(VMFSError) -> SCSIProbe
    /// The registered keys (READ KEYS).
    func registeredKeys() throws(VMFSError) -> [UInt64]
    /// The persistent reservation: its key and type, or nil when there is none.
    func persistentReservation() throws(VMFSError) -> (key: UInt64, type: UInt8)?
    /// Registers `key` for this I_T nexus (REGISTER AND IGNORE EXISTING KEY).
    func register(key: UInt64) throws(VMFSError)
    /// Removes this nexus's registration of `key`.
    func unregister(key: UInt64) throws(VMFSError)
    /// Takes a WRITE EXCLUSIVE – REGISTRANTS ONLY reservation with `key` (a no-op when one is held).
    func reserveForRegistrants(key: UInt64) throws(VMFSError)
    /// Removes every registration of `victim`: its queued writes then fail with RESERVATION CONFLICT.
    func preempt(victim: UInt64, using key: UInt64) throws(VMFSError)
    /// Removes every registration and the reservation (mkfs on a LUN that had hosts).
    func clearPersistentReservations() throws(VMFSError)
    /// Decides what a write that got RESERVATION CONFLICT does: true retries it, false fails it
    /// with ``VMFSError/Code/fenced``. Nil (the default) waits for the conflict to clear.
    func setConflictHandler(_ handler: (@Sendable () -> Bool)?)
    /// Drops the connection and logs in again: a new I_T nexus, on which nothing queued before runs.
    func renewNexus() throws(VMFSError)
}

/// The answer of a capability probe.
public enum SCSIProbe: Sendable, Equatable {
    case supported
    /// Not supported, and why (the sense data, in words).
    case unsupported(String)

    public var isSupported: Bool { self == .supported }
}
