internal import CFuse
internal import VMFSCore
import Synchronization

/// A file opened through the mount: what `fi->fh` stands for between OPEN and RELEASE.
///
/// `fi->fh` is the object's address, retained for the kernel from OPEN until RELEASE, so the
/// data path finds it without a table lookup (a shared table's lock was measurable under many
/// parallel requests). The kernel only ever hands back values this daemon gave it.
final class OpenHandle: Sendable {
    let handle: FileHandle
    let inode: fuse_ino_t
    let slot: Int
    /// Opened for writing: the handle holds the file's exclusive lock.
    let writable: Bool
    /// Written (data, size or allocation) since the last FLUSH or FSYNC.
    let dirty = Atomic<Bool>(false)

    init(handle: FileHandle, inode: fuse_ino_t, writable: Bool) {
        self.handle = handle
        self.inode = inode
        self.slot = handle.slot
        self.writable = writable
    }

    /// Retains the handle for the kernel and returns its `fi->fh` value.
    func retainForKernel() -> UInt64 {
        UInt64(UInt(bitPattern: Unmanaged.passRetained(self).toOpaque()))
    }

    /// The handle behind an `fi->fh` value, still retained for the kernel.
    static func borrowed(_ fh: UInt64) -> OpenHandle? {
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(fh)) else { return nil }
        return Unmanaged<OpenHandle>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// The handle behind an `fi->fh` value, no longer retained for the kernel (RELEASE).
    static func released(_ fh: UInt64) -> OpenHandle? {
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(fh)) else { return nil }
        return Unmanaged<OpenHandle>.fromOpaque(pointer).takeRetainedValue()
    }
}

/// Every file handle the kernel holds, for closing them when the mount goes away.
final class OpenHandleRegistry: Sendable {
    private let handles = Mutex<[ObjectIdentifier: OpenHandle]>([:])

    func add(_ open: OpenHandle) { handles.withLock { $0[ObjectIdentifier(open)] = open } }

    func remove(_ open: OpenHandle) { handles.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(open)) } }

    /// Forgets every handle (at unmount) and returns them.
    func removeAll() -> [OpenHandle] {
        handles.withLock { handles in
            let all = Array(handles.values)
            handles.removeAll()
            return all
        }
    }
}

/// A listing of the root directory taken at OPENDIR, so that READDIR calls at increasing
/// offsets see one consistent snapshot while other hosts create and remove files.
final class DirectorySnapshot: Sendable {
    let files: Mutex<[FileStatus]>

    init(_ files: [FileStatus]) { self.files = Mutex(files) }
}

/// Numbers handed to the kernel as `fi->fh`, and the objects behind them.
///
/// A number never names two objects: numbers are not reused, so a stale or forged `fh` finds
/// nothing (`EBADF`) instead of someone else's file.
final class HandleTable<Value: Sendable>: Sendable {
    private struct State {
        var next: UInt64 = 1
        var values: [UInt64: Value] = [:]
    }

    private let state = Mutex(State())

    /// Stores `value` and returns its number.
    func insert(_ value: Value) -> UInt64 {
        state.withLock { state in
            let number = state.next
            state.next += 1
            state.values[number] = value
            return number
        }
    }

    /// The object numbered `number`.
    func value(_ number: UInt64) -> Value? {
        state.withLock { $0.values[number] }
    }

    /// Forgets `number` and returns what it named.
    func remove(_ number: UInt64) -> Value? {
        state.withLock { $0.values.removeValue(forKey: number) }
    }

    /// Forgets every number (at unmount) and returns the objects.
    func removeAll() -> [Value] {
        state.withLock { state in
            let values = Array(state.values.values)
            state.values.removeAll()
            return values
        }
    }

}
