import Synchronization

/// An open file. Read-write handles hold the file's exclusive lock until closed.
public final class FileHandle: Sendable {
    let session: Session
    let file: OpenFile
    /// How the file was opened.
    public let access: FileAccess
    /// Who on this host holds it.
    public let client: FileClient
    private let closed = Mutex<Bool>(false)

    init(session: Session, file: OpenFile, access: FileAccess, client: FileClient = .local) {
        self.session = session
        self.file = file
        self.access = access
        self.client = client
    }

    /// A handle for `file`, just opened by `session.open`, once `client` may have it: a write
    /// handle is refused (and the open undone) while another client of this host writes the file.
    static func admit(session: Session, file: OpenFile, access: FileAccess, client: FileClient,
                      name: String) throws(VMFSError) -> FileHandle {
        if access != .readOnly {
            do {
                try file.admitWriter(client, name: name)
            } catch {
                try? session.close(file, access: access)
                throw error
            }
        }
        return FileHandle(session: session, file: file, access: access, client: client)
    }

    deinit { try? close() }

    /// The descriptor slot.
    public var slot: Int { file.slot }
    /// The descriptor generation.
    public var generation: UInt32 { file.generation }
    /// The file size as this host knows it.
    public var size: UInt64 { file.descriptor.size }

    private func checkOpen() throws(VMFSError) {
        if closed.withLock({ $0 }) { throw VMFSError(.invalidArgument, "the file handle is closed") }
        try file.checkUsable()
        if session.isClosed && session.fence.lostReason != nil {
            throw VMFSError(.staleHandle, "the host lost its heartbeat slot: \(session.fence.lostReason ?? "")")
        }
    }

    private func checkWritable() throws(VMFSError) {
        try checkOpen()
        guard access == .readWrite else {
            throw VMFSError(.permissionDenied, "the file is open \(access); this change needs a read-write handle")
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns the count (0 at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) -> Int {
        try checkOpen()
        return try session.read(file, into: buffer, at: offset)
    }

    /// Reads up to `count` bytes at `offset`.
    public func read(count: Int, at offset: UInt64) throws(VMFSError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try withMutableBytes(of: &bytes) { (raw) throws(VMFSError) -> Int in try read(into: raw, at: offset) }
        bytes.removeLast(count - n)
        return bytes
    }

    /// Writes `buffer` at `offset`, extending the file as needed.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        try checkOpen()
        guard access != .readOnly else { throw VMFSError(.permissionDenied, "the file is open read-only") }
        try session.write(file, buffer, at: offset, multiWriter: access == .multiWriter)
    }

    /// Writes `bytes` at `offset`.
    public func write(bytes: [UInt8], at offset: UInt64) throws(VMFSError) {
        try withBytes(of: bytes) { (raw) throws(VMFSError) in try write(raw, at: offset) }
    }

    /// Sets the size.
    public func truncate(to size: UInt64) throws(VMFSError) {
        try checkWritable()
        try session.truncate(file, to: size)
    }

    /// Preallocates a range (lazy-zeroed unless `eagerZero`), growing the file unless `keepSize`.
    public func allocate(offset: UInt64, length: UInt64, keepSize: Bool = false, eagerZero: Bool = false) throws(VMFSError) {
        try checkWritable()
        try session.allocate(file, offset: offset, length: length, keepSize: keepSize, eagerZero: eagerZero)
    }

    /// Deallocates a range; it reads as zeros afterwards and the size stays.
    public func punchHole(offset: UInt64, length: UInt64) throws(VMFSError) {
        try checkWritable()
        try session.punchHole(file, offset: offset, length: length)
    }

    /// Makes the file's data and metadata durable (`fsync`).
    public func sync() throws(VMFSError) {
        try checkOpen()
        try session.sync()
    }

    /// Changes mode, owner, times or size.
    public func setAttributes(_ changes: AttributeChanges) throws(VMFSError) {
        try checkWritable()
        try session.setAttributes(file, changes)
    }

    /// The file's attributes.
    public func status() throws(VMFSError) -> FileStatus {
        try checkOpen()
        let descriptor = file.descriptor
        let name = (try? session.namespace.entries().first { $0.slot == file.slot && $0.generation == file.generation }?.name)
            ?? file.state.withLock { $0.name }
        return FileStatus(name: name, descriptor: descriptor, blockSize: session.layout.blockSize)
    }

    /// Closes the handle: the last handle of this host commits and releases the file's lock.
    public func close() throws(VMFSError) {
        let wasClosed = closed.withLock { c -> Bool in
            let was = c
            c = true
            return was
        }
        if wasClosed { return }
        if access != .readOnly { file.dismissWriter(client) }
        if session.isClosed { return }
        try session.close(file, access: access)
    }
}
