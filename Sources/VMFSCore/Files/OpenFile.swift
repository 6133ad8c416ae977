import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A file this host has open: the lock it holds, its handles, and its latest descriptor.
final class OpenFile: @unchecked Sendable {
    struct State {
        var descriptor: FileDescriptorRecord
        var lockMode: LockRecord.Mode
        var readers = 0
        var writers = 0
        var multiWriters = 0
        /// Unlinked while open here; freed when the last handle closes.
        var orphaned = false
        /// Write handles (read-write or multi-writer) per client of this host.
        var writingClients: [FileClient: Int] = [:]
        /// The lock was lost (host fenced); every I/O fails.
        var stale: String?
        var name: String
    }

    let slot: Int
    let generation: UInt32
    let state: Monitor<State>
    /// Serializes metadata changes (allocation, size, map) of this file on this host.
    let metadataLock = KeyedLocks<Int>()
    /// Data blocks the volume's maps used more than once when this host first filled a
    /// preallocated block of the file (``Session/verifyClaim(_:block:number:)``).
    let sharedBlocks = Mutex<Bitset?>(nil)
    /// The bitmaps of the clusters the file's data blocks lie in, read once per open: while
    /// this host holds the file's lock no other host frees its blocks, so a bit that said
    /// "allocated" stays true for them (``Session/checkOwned(_:number:fileBlock:)``).
    let ownedClusters = Mutex<[Int: ClusterBitmap]>([:])
    /// Data I/O holds this shared; operations that free blocks hold it exclusive.
    private let dataLock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    var lockIndex: Int { FormatConstants.descriptorLockIndex(slot: slot) }

    init(descriptor: FileDescriptorRecord, lockMode: LockRecord.Mode, name: String) {
        slot = descriptor.slot
        generation = descriptor.generation
        state = Monitor(State(descriptor: descriptor, lockMode: lockMode, name: name))
        pthread_rwlock_init(dataLock, nil)
    }

    deinit {
        pthread_rwlock_destroy(dataLock)
        dataLock.deallocate()
    }

    var descriptor: FileDescriptorRecord { state.withLock { $0.descriptor } }

    func withMetadataLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try metadataLock.withLock(0, body)
    }

    func withSharedData<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(dataLock)
        defer { pthread_rwlock_unlock(dataLock) }
        return try body()
    }

    func withExclusiveData<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_wrlock(dataLock)
        defer { pthread_rwlock_unlock(dataLock) }
        return try body()
    }

    func checkUsable() throws(VMFSError) {
        if let reason = state.withLock({ $0.stale }) {
            throw VMFSError(.staleHandle, "the file's lock was lost: \(reason)")
        }
    }

    var handleCount: Int { state.withLock { $0.readers + $0.writers + $0.multiWriters } }

    /// Records a new write handle of `client`, or throws `busy` when another client of this host
    /// has the file open for writing.
    func admitWriter(_ client: FileClient, name: String) throws(VMFSError) {
        try state.withLock { (s) throws(VMFSError) in
            if let other = s.writingClients.first(where: { $0.key != client && $0.value > 0 })?.key {
                throw VMFSError(.busy, "'\(name)' is open for writing by \(other) on this host")
            }
            s.writingClients[client, default: 0] += 1
        }
    }

    /// Forgets one write handle of `client`.
    func dismissWriter(_ client: FileClient) {
        state.withLock { s in
            guard let count = s.writingClients[client] else { return }
            s.writingClients[client] = count > 1 ? count - 1 : nil
        }
    }
}
