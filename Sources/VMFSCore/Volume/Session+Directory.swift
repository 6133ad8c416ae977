/// The root directory's attributes (mode, owner, times): kept in name table sector 0 and
/// changed under the file table lock, in the same operation as the names they describe.
extension Session {
    /// The attributes of a root that has no record yet.
    var directoryDefaults: DirectoryAttributes { .defaults(created: header.creationTime) }

    /// The root directory's attributes now (one lock sector read when nothing changed).
    func directoryAttributes() throws(VMFSError) -> DirectoryAttributes {
        try namespace.table().directory ?? directoryDefaults
    }

    /// Records that the names changed: the root's modification and change times become now.
    /// Runs inside the operation that changed them (file table lock held), after their sectors
    /// were stored.
    func stampDirectory() throws(VMFSError) {
        let now = Clock.wallNanoseconds
        try changeDirectory { directory in
            directory.modificationTime = now
            directory.changeTime = now
        }
    }

    private func changeDirectory(_ change: (inout DirectoryAttributes) -> Void) throws(VMFSError) {
        var sector = try nameSector(0)
        var directory = sector.directory ?? directoryDefaults
        change(&directory)
        sector.directory = directory
        try storeNameSector(sector)
    }

    /// Changes the root's mode, owner or times (its change time becomes now).
    ///
    /// - Throws: `isDirectory` for a size change.
    func setDirectoryAttributes(_ changes: AttributeChanges) throws(VMFSError) -> DirectoryAttributes {
        try checkWritable()
        if changes.size != nil { throw VMFSError(.isDirectory, "the root directory has no size to change") }
        return try withTableLock { () throws(VMFSError) -> DirectoryAttributes in
            try store.operation { () throws(VMFSError) in
                try changeDirectory { directory in
                    if let mode = changes.mode { directory.mode = mode & 0o7777 }
                    if let uid = changes.uid { directory.uid = uid }
                    if let gid = changes.gid { directory.gid = gid }
                    if let time = changes.accessTime { directory.accessTime = time }
                    if let time = changes.modificationTime { directory.modificationTime = time }
                    directory.changeTime = Clock.wallNanoseconds
                }
            }
            return try nameSector(0).directory ?? directoryDefaults
        }
    }
}
