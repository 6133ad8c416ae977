import Synchronization

/// A VMFS volume mounted by this host.
///
/// Mounting claims a heartbeat slot and starts renewing it; every file operation then
/// coordinates with the other hosts through on-disk locks. Metadata changes go through this
/// host's journal. If the host loses its slot (it stalled past the dead interval and another
/// host recovered it) the open handles become stale and the volume rejoins with a new slot.
public final class Volume: Sendable {
    /// The volume header read at mount.
    public let header: VolumeHeader
    /// The device the volume lives on.
    public let device: any BlockDevice
    /// The options it was mounted with.
    public let options: MountOptions
    /// Counts of lock and heartbeat I/O.
    public let clusterStatistics = ClusterIOStatistics()
    private let localLock: LocalHostLock
    private let session: Mutex<Session?>
    private let events = Mutex<[String]>([])
    private let eventHandler = Mutex<(@Sendable (VolumeEvent) -> Void)?>(nil)
    private let unmounted = Mutex<Bool>(false)

    /// Mounts the volume on the image file or block device at `path`.
    public static func mount(path: String, options: MountOptions = MountOptions()) throws(VMFSError) -> Volume {
        let device = try DeviceOpener.open(path, readOnly: false, directIO: options.directIO)
        return try mount(device: device, options: options)
    }

    /// Mounts the volume on `device`.
    ///
    /// - Throws: ``VMFSError`` naming the device and structure: not a VMFS volume, a newer
    ///   format, a corrupt header, a truncated device, or no free heartbeat slot.
    public static func mount(device: any BlockDevice, options: MountOptions = MountOptions()) throws(VMFSError) -> Volume {
        let header = try readHeader(device)
        return try Volume(header: header, device: device, options: options)
    }

    /// Reads and validates the volume header of `device`, checking the device is large enough.
    public static func readHeader(_ device: any BlockDevice) throws(VMFSError) -> VolumeHeader {
        guard device.size >= UInt64(FormatConstants.sectorSize) else {
            throw VMFSError(.notVMFS, "\(device.path) is \(device.size) bytes: too small to hold a VMFS volume",
                            location: .init(device: device.path))
        }
        let bytes = try device.read(count: FormatConstants.sectorSize, at: 0)
        let header: VolumeHeader
        do {
            header = try VolumeHeader.decode(bytes, offset: 0, device: device.path)
        } catch where error.code == .corrupt {
            var message = error.message
            let backupOffset = (device.size / UInt64(FormatConstants.sectorSize) - 1) * UInt64(FormatConstants.sectorSize)
            if let backup = try? device.read(count: FormatConstants.sectorSize, at: backupOffset),
               (try? VolumeHeader.decode(backup, offset: backupOffset, device: device.path)) != nil {
                message += "; the backup header is intact: run fsck.vmfs -y to restore it"
            }
            throw VMFSError(.corrupt, message, location: error.location)
        }
        guard device.size >= header.layout.deviceSize else {
            throw VMFSError(.corrupt, "\(device.path) is \(device.size) bytes but the volume was made for \(header.layout.deviceSize) bytes: "
                            + "the device or image is truncated", location: .init(device: device.path, structure: "volume header", offset: 168))
        }
        return header
    }

    private init(header: VolumeHeader, device: any BlockDevice, options: MountOptions) throws(VMFSError) {
        self.header = header
        self.device = device
        self.options = options
        localLock = try LocalHostLock(volume: header.uuid, host: options.host.uuid, note: options.holderNote)
        session = Mutex(nil)
        let first = try Session(header: header, device: device, options: options, statistics: clusterStatistics)
        events.withLock { $0 += first.startupNotes }
        session.withLock { $0 = first }
        first.start(onLost: { [weak self] reason in self?.rejoin(after: reason) })
    }

    /// The live session, or a `fenced` error while there is none.
    func current() throws(VMFSError) -> Session {
        guard let session = session.withLock({ $0 }), !session.isClosed else {
            if unmounted.withLock({ $0 }) { throw VMFSError(.invalidArgument, "the volume is unmounted") }
            throw VMFSError(.fenced, "this host has no heartbeat slot on the volume right now")
        }
        return session
    }

    private func rejoin(after reason: String) {
        events.withLock { $0.append("lost heartbeat slot: \(reason)") }
        eventHandler.withLock { $0 }?(.membershipLost(reason: reason))
        BackgroundThread.detach(name: "vmfs-rejoin") { [weak self] in
            guard let self else { return }
            let old = self.session.withLock { s -> Session? in
                let old = s
                s = nil
                return old
            }
            old?.abandon()
            var failures = 0
            var waitingForRepair = false
            while failures < 50 {
                if self.unmounted.withLock({ $0 }) || self.options.interruption.isRequested { return }
                do throws(VMFSError) {
                    let fresh = try Session(header: self.header, device: self.device, options: self.options,
                                            statistics: self.clusterStatistics)
                    self.session.withLock { $0 = fresh }
                    self.events.withLock { $0 += fresh.startupNotes }
                    fresh.start(onLost: { [weak self] reason in self?.rejoin(after: reason) })
                    self.events.withLock { $0.append("rejoined in heartbeat slot \(fresh.membership.slot)") }
                    self.eventHandler.withLock { $0 }?(.rejoined(slot: fresh.membership.slot))
                    return
                } catch where MaintenanceClaim.isRefusal(error) {
                    // A repair runs (or was interrupted): wait for it as long as it takes.
                    if !waitingForRepair { self.events.withLock { $0.append("waiting to rejoin: \(error)") } }
                    waitingForRepair = true
                    Clock.sleep(milliseconds: 1000)
                } catch {
                    failures += 1
                    self.events.withLock { $0.append("rejoin attempt \(failures) failed: \(error)") }
                    Clock.sleep(milliseconds: 200)
                }
            }
        }
    }

    /// Releases the file locks adopted from this host's previous incarnation
    /// (``MountOptions/adoptFileLocks``) that no file opened since uses.
    public func finishAdoption() throws(VMFSError) { try current().releaseAdoptedLocks() }

    /// Hands this host's membership over to its next incarnation instead of leaving: commits,
    /// stops the heartbeat and keeps the slot and every lock. The next mount with the same identity
    /// and ``MountOptions/adoptFileLocks`` takes them over. Until it does, the slot ages and other
    /// hosts will recover it after the dead interval. The volume is unmounted afterwards.
    public func handOver() throws(VMFSError) {
        let already = unmounted.withLock { u -> Bool in
            defer { u = true }
            return u
        }
        if already { return }
        let current = session.withLock { s -> Session? in
            defer { s = nil }
            return s
        }
        defer { localLock.release() }
        try current?.handOver()
    }

    /// When another process of this machine has the volume on `device` mounted as `host`, the note
    /// it left (``MountOptions/holderNote``; empty when it left none); nil when none has.
    public static func localHolderNote(device: any BlockDevice, host: HostIdentity) -> String? {
        guard let header = try? readHeader(device) else { return nil }
        return LocalHostLock.holderNote(volume: header.uuid, host: host.uuid)
    }

    /// Calls `handler` on a background thread for every ``VolumeEvent`` from now on.
    public func setEventHandler(_ handler: @escaping @Sendable (VolumeEvent) -> Void) {
        eventHandler.withLock { $0 = handler }
    }

    /// Until when (`CLOCK_MONOTONIC` nanoseconds) this host may write: its last heartbeat renewal
    /// plus D − T. Nil while it holds no slot. A host agent hands this on as its VMs' lease.
    public var writeDeadline: UInt64? { (try? current())?.fence.writeDeadline }

    /// Notable events (slot loss, rejoin) since mount, oldest first.
    public var eventLog: [String] { events.withLock { $0 } }

    /// Commits, closes every file, releases every lock and frees the heartbeat slot.
    public func unmount() throws(VMFSError) {
        let already = unmounted.withLock { u -> Bool in
            let was = u
            u = true
            return was
        }
        if already { return }
        let current = session.withLock { s -> Session? in
            let c = s
            s = nil
            return c
        }
        defer { localLock.release() }
        try current?.leave()
    }

    deinit {
        if !unmounted.withLock({ $0 }) { try? unmount() }
    }

    // MARK: Identity

    /// The heartbeat slot and generation this host holds now.
    public var membership: (slot: Int, generation: UInt64)? {
        guard let s = try? current() else { return nil }
        return (s.membership.slot, s.membership.generation)
    }

    /// The heartbeat timing this mount uses.
    public var timing: HeartbeatTiming? { try? current().timing }

    // MARK: Namespace

    /// Every file, sorted by name.
    public func list() throws(VMFSError) -> [FileStatus] { try current().list() }

    /// The attributes of `name`.
    public func status(of name: String) throws(VMFSError) -> FileStatus { try current().status(of: name) }

    /// The attributes of the file in `slot` if it still has `generation`.
    public func status(slot: Int, generation: UInt32) throws(VMFSError) -> FileStatus {
        try current().status(slot: slot, generation: generation)
    }

    /// Creates an empty file.
    ///
    /// - Throws: `alreadyExists`, `tooManyFiles` (the 256th file), `nameTooLong`, `invalidArgument`.
    @discardableResult
    public func create(_ name: String, attributes: CreateAttributes = CreateAttributes()) throws(VMFSError) -> FileStatus {
        try current().create(name, attributes: attributes, open: nil).0
    }

    /// Creates an empty file and opens it.
    public func create(_ name: String, attributes: CreateAttributes = CreateAttributes(), access: FileAccess,
                       client: FileClient = .local) throws(VMFSError) -> FileHandle {
        let session = try current()
        let (_, file) = try session.create(name, attributes: attributes, open: access)
        guard let file else { throw VMFSError(.io, "created '\(name)' but could not open it") }
        return try FileHandle.admit(session: session, file: file, access: access, client: client, name: name)
    }

    /// Opens `name`. Read-write takes the file's exclusive lock (`EBUSY` naming the owner when
    /// another host has it); read-only shares.
    ///
    /// - Parameter client: Who on this host opens it: a read-write or multi-writer open fails with
    ///   `EBUSY` while another client of this host has the file open for writing.
    public func open(_ name: String, access: FileAccess = .readOnly, client: FileClient = .local) throws(VMFSError) -> FileHandle {
        let session = try current()
        guard let entry = try session.namespace.lookup(name) else { throw VMFSError(.notFound, "no file named '\(name)'") }
        let file = try session.open(slot: entry.slot, generation: entry.generation, name: name, access: access)
        return try FileHandle.admit(session: session, file: file, access: access, client: client, name: name)
    }

    /// Opens the file in `slot` if it still has `generation` (FUSE opens by inode). A file this
    /// host has open can be opened this way after it was unlinked, until its last handle closes.
    public func open(slot: Int, generation: UInt32, access: FileAccess, client: FileClient = .local) throws(VMFSError) -> FileHandle {
        let session = try current()
        let name = try session.status(slot: slot, generation: generation).name
        let file = try session.open(slot: slot, generation: generation, name: name, access: access, byName: false)
        return try FileHandle.admit(session: session, file: file, access: access, client: client, name: name)
    }

    /// Removes `name` (`EBUSY` while another host has it open).
    public func remove(_ name: String) throws(VMFSError) { try current().remove(name) }

    /// Renames `source` to `target` atomically.
    public func rename(_ source: String, to target: String, mode: RenameMode = .replace) throws(VMFSError) {
        try current().rename(source, to: target, mode: mode)
    }

    /// The root directory's mode, owner and times.
    public func directoryAttributes() throws(VMFSError) -> DirectoryAttributes { try current().directoryAttributes() }

    /// Changes the root directory's mode, owner or times (kept on the volume for every host).
    @discardableResult
    public func setDirectoryAttributes(_ changes: AttributeChanges) throws(VMFSError) -> DirectoryAttributes {
        try current().setDirectoryAttributes(changes)
    }

    /// Always refused: the volume has a flat namespace.
    public func makeDirectory(_ name: String) throws(VMFSError) {
        throw VMFSError(.permissionDenied, "cannot create directory '\(name)': a VMFS volume has a flat namespace without directories")
    }

    /// Changes attributes of `name`, taking its lock for the change when this host has not got it open.
    @discardableResult
    public func setAttributes(of name: String, _ changes: AttributeChanges) throws(VMFSError) -> FileStatus {
        let handle = try open(name, access: .readWrite)
        defer { try? handle.close() }
        try handle.setAttributes(changes)
        return try handle.status()
    }

    /// Makes every change durable.
    public func sync() throws(VMFSError) { try current().sync() }

    /// Free and total space.
    public func statistics() throws(VMFSError) -> VolumeStatistics { try current().spaceStatistics() }

    /// Recovers heartbeat slot `slot` if its host is dead (or, with `force`, whatever it looks
    /// like). Returns true when this host replayed it.
    @discardableResult
    public func recover(slot: Int, force: Bool = false) throws(VMFSError) -> Bool {
        try current().recovery.recover(slot: slot, force: force) != nil
    }

    /// Watches the heartbeat region for up to `waitMilliseconds` and recovers every host that
    /// is or becomes dead. Returns the slots this host recovered.
    public func recoverDeadHosts(waitMilliseconds: UInt64) throws(VMFSError) -> [Int] {
        let session = try current()
        var recovered: [Int] = []
        let deadline = Clock.monotonicNanoseconds + waitMilliseconds * 1_000_000
        repeat {
            try session.heartbeat.refresh()
            for slot in session.observations.slotsNeedingRecovery(own: session.membership.slot) {
                if try session.recovery.recover(slot: slot) != nil { recovered.append(slot) }
            }
            let claimed = session.observations.all().filter { $0.key != session.membership.slot && $0.value.slot.state != .free }
            if claimed.isEmpty { break }
            try options.interruption.sleep(milliseconds: 20, while: "waiting for silent hosts to be declared dead")
        } while Clock.monotonicNanoseconds < deadline
        return recovered
    }

    /// Frees lock `index`: holders whose heartbeat moved on are dropped, dead holders are
    /// recovered first; live holders only with `force`. Returns a description of what was done.
    public func breakLock(_ index: Int, force: Bool) throws(VMFSError) -> String {
        try current().breakLock(index, force: force)
    }

    /// Recoveries of dead hosts this host performed (slot, owner, duration in ns, transactions replayed).
    public var recoveries: [(slot: Int, owner: HostUUID, nanoseconds: UInt64, transactions: Int)] {
        (try? current().recovery.completed.map { ($0.slot, $0.owner, $0.durationNanoseconds, $0.replay.transactions) }) ?? []
    }

    /// Starts, on background threads, the recovery of every host that looks dead now — what
    /// the heartbeat does after each renewal, for a caller that has just seen a host die between
    /// two renewals (HA detects failures every 100 ms; at VMware's H = 3 s the next renewal
    /// could be 3 s away). Does nothing when automatic recovery is off or the volume is read-only.
    public func recoverDeadHostsInBackground() throws(VMFSError) {
        let session = try current()
        try session.heartbeat.refresh()
        session.recoverDeadHosts()
    }

    /// Hosts as this host sees them now.
    public func hosts() throws(VMFSError) -> [HostInfo] {
        let session = try current()
        try session.heartbeat.refresh()
        return HostInfo.describe(session.observations, own: session.membership.slot)
    }

    /// Metadata commits since mount.
    public var commitCount: Int { (try? current().store.commits) ?? 0 }
}

/// What happens to this host's membership of a volume, told to ``Volume/setEventHandler(_:)``.
public enum VolumeEvent: Sendable, Equatable {
    /// The host lost its heartbeat slot (it stalled past the dead interval and another host
    /// recovered it). Every open handle is stale: whatever it locked may now be someone else's.
    case membershipLost(reason: String)
    /// The host joined the volume again in `slot`; files must be opened anew.
    case rejoined(slot: Int)
}
