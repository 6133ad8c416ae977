/// Attributes of an open file without device I/O, for callers that ask often (a FUSE daemon's
/// GETATTR of an open file).
extension FileHandle {
    /// The file's attributes as this host holds them. While a handle is open, this host holds
    /// the file's lock, so no other host can change them; the name is the one this host last
    /// knew (opened under, or renamed to here) — another host may have renamed the file since.
    public var heldStatus: FileStatus {
        FileStatus(name: file.state.withLock { $0.name }, descriptor: file.descriptor, blockSize: session.layout.blockSize)
    }
}
