import Synchronization

/// SPC-3 persistent-reservation fencing of one membership (volume header byte 377 = 1).
///
/// Joining registers a new key for this host's I_T nexus and makes sure the LUN carries a WRITE
/// EXCLUSIVE – REGISTRANTS ONLY reservation: from then on only registered initiators may write.
/// The key goes into the host's heartbeat slot. A host that recovers a dead one first preempts
/// the dead host's key: every write the dead host still had queued — in its process, its kernel
/// or the network — then fails at the target with RESERVATION CONFLICT instead of landing.
///
/// A write of this host that meets RESERVATION CONFLICT asks ``handleConflict()``: if the key is
/// still registered (the connection was re-established and the new nexus is not registered yet)
/// and the host may still write, it registers the new nexus and the write is retried; if the key
/// is gone, this host was declared dead: the membership is lost and the write fails.
final class StorageFence: Sendable {
    let storage: any SCSIStorage
    let key: UInt64
    private let fence: FenceState
    private let state = Mutex<(preempted: Bool, left: Bool)>((false, false))

    /// Keys this process registered per device, so a rejoin can remove an earlier membership's.
    private static let earlier = Mutex<[ObjectIdentifier: UInt64]>([:])

    private init(storage: any SCSIStorage, key: UInt64, fence: FenceState) {
        self.storage = storage
        self.key = key
        self.fence = fence
    }

    /// A random key; the top two bytes read "VM" so administrators recognize them in `sg_persist`.
    static func newKey() -> UInt64 { 0x564D_0000_0000_0000 | UInt64.random(in: 1...0xFFFF_FFFF_FFFF) }

    /// Registers a new key on a fresh I_T nexus (nothing queued under an earlier registration of
    /// this device can run on it) and makes sure the reservation exists.
    static func join(storage: any SCSIStorage, fence: FenceState) throws(VMFSError) -> StorageFence {
        let device = ObjectIdentifier(storage)
        let previous = earlier.withLock { $0[device] }
        if previous != nil { try storage.renewNexus() }
        let key = newKey()
        try storage.register(key: key)
        do throws(VMFSError) {
            try storage.reserveForRegistrants(key: key)
            if let previous, previous != key { try storage.preempt(victim: previous, using: key) }
        } catch {
            try? storage.unregister(key: key)
            throw error
        }
        earlier.withLock { $0[device] = key }
        let joined = StorageFence(storage: storage, key: key, fence: fence)
        storage.setConflictHandler { [weak joined] in joined?.handleConflict() ?? false }
        return joined
    }

    /// What a write that met RESERVATION CONFLICT does: true to retry it (this nexus is now
    /// registered), false when the key was preempted (the membership is lost).
    func handleConflict() -> Bool {
        state.withLock { s -> Bool in
            if s.preempted || s.left { return false }
            guard let keys = try? storage.registeredKeys() else { return false }
            if keys.contains(key), let deadline = fence.writeDeadline, Clock.monotonicNanoseconds < deadline {
                return (try? storage.register(key: key)) != nil
            }
            if !keys.contains(key) {
                s.preempted = true
                fence.markLost("persistent-reservation key 0x\(String(key, radix: 16)) was preempted at the target "
                               + "(another host declared this one dead)")
            }
            return false
        }
    }

    /// Preempts `victim`'s registrations (a dead host's key from its heartbeat slot).
    func preempt(_ victim: UInt64) throws(VMFSError) {
        guard victim != 0, victim != key else { return }
        try storage.preempt(victim: victim, using: key)
    }

    /// Takes the reservation again when it is gone (its holder unmounted and unregistered, which
    /// releases a registrants-only reservation): called after every heartbeat renewal, so a LUN
    /// with members is unreserved for at most one heartbeat interval. Failures are left to the
    /// next renewal.
    func maintainReservation() {
        guard state.withLock({ !$0.preempted && !$0.left }) else { return }
        do throws(VMFSError) {
            guard try storage.persistentReservation() == nil else { return }
            try storage.reserveForRegistrants(key: key)
        } catch {
            return
        }
    }

    /// Unregisters (a clean unmount) — unless this host holds the reservation and no other host
    /// is registered: unregistering would release it, and hosts preempted earlier could then
    /// write whatever they still have queued. The last member's key therefore stays registered
    /// (and holds the reservation) after it leaves; the next `mkfs.vmfs` clears it. A holder that
    /// leaves while others are registered releases it, and they take it again within one
    /// heartbeat interval (``maintainReservation()``).
    func leave() {
        let first = state.withLock { s -> Bool in
            defer { s.left = true }
            return !s.left && !s.preempted
        }
        guard first else { return }
        if let held = try? storage.persistentReservation(), held.key == key, (try? storage.registeredKeys()) == [key] { return }
        try? storage.unregister(key: key)
        Self.earlier.withLock { $0[ObjectIdentifier(storage)] = nil }
    }
}
