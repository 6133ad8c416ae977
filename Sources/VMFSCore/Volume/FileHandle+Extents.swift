/// Where a file's data lies: holes for `lseek(SEEK_DATA/SEEK_HOLE)`, device ranges for
/// zero-copy reads (vmfs-fuse splices them from the device into `/dev/fuse`).
///
/// Holes are blocks never allocated and blocks preallocated but never written (they read as
/// zeros); data is every written block, and all of a file whose data lives in its descriptor.

/// A run of a file's bytes and where they are.
public struct FileExtent: Sendable, Equatable {
    /// Offset in the file.
    public var offset: UInt64
    /// Length in bytes.
    public var length: Int
    /// Byte offset of the run on the device, or `nil` when it reads as zeros.
    public var deviceOffset: UInt64?

    public init(offset: UInt64, length: Int, deviceOffset: UInt64?) {
        self.offset = offset
        self.length = length
        self.deviceOffset = deviceOffset
    }
}

extension FileHandle {
    private func isWritten(_ entry: UInt32) -> Bool {
        entry != 0 && entry & FormatConstants.unwrittenFlag == 0
    }

    /// The first offset at or after `offset` that holds data (`SEEK_DATA`), or `nil` when only
    /// holes follow before the end of the file.
    public func nextData(from offset: UInt64) throws(VMFSError) -> UInt64? {
        try file.checkUsable()
        return try file.withSharedData { () throws(VMFSError) -> UInt64? in
            let descriptor = file.descriptor
            guard offset < descriptor.size else { return nil }
            if descriptor.isInline { return offset }
            let blockSize = session.blockSize
            let map = session.map(of: file)
            let limit = descriptor.size.pieces(of: blockSize)
            var block = offset / blockSize
            while let (found, entry) = try map.nextMapped(from: block, limit: limit) {
                if isWritten(entry) { return max(offset, found * blockSize) }
                block = found + 1
            }
            return nil
        }
    }

    /// The first offset at or after `offset` that starts a hole (`SEEK_HOLE`); the end of the
    /// file counts as a hole. `offset` must be inside the file.
    public func nextHole(from offset: UInt64) throws(VMFSError) -> UInt64 {
        try file.checkUsable()
        return try file.withSharedData { () throws(VMFSError) -> UInt64 in
            let descriptor = file.descriptor
            guard offset < descriptor.size else {
                throw VMFSError(.invalidArgument, "offset \(offset) is at or past the end of the file (\(descriptor.size) bytes)")
            }
            if descriptor.isInline { return descriptor.size }
            let blockSize = session.blockSize
            let map = session.map(of: file)
            var block = offset / blockSize
            let end = descriptor.size.pieces(of: blockSize)
            while block < end {
                if !isWritten(try map.entry(at: block)) { return max(offset, block * blockSize) }
                block += 1
            }
            return descriptor.size
        }
    }

    /// Calls `body` with the runs covering `[offset, offset + count)`, cut at the end of the file,
    /// while none of the file's blocks can be freed or reused (the file's data lock is held
    /// shared, as during a read). Contiguous device ranges are merged.
    ///
    /// Returns `nil` without calling `body` when the data lives in the descriptor (small files),
    /// which has no device range: read those with ``read(into:at:)``.
    public func withDeviceExtents<R>(offset: UInt64, count: Int, _ body: ([FileExtent]) -> R) throws(VMFSError) -> R? {
        try file.checkUsable()
        return try file.withSharedData { () throws(VMFSError) -> R? in
            let descriptor = file.descriptor
            if descriptor.isInline { return nil }
            guard offset < descriptor.size, count > 0 else { return body([]) }
            let end = min(offset.saturatingAdd(UInt64(count)), descriptor.size)
            let blockSize = session.blockSize
            let map = session.map(of: file)
            var extents: [FileExtent] = []
            var position = offset
            while position < end {
                let block = position / blockSize
                let within = position % blockSize
                let length = min(blockSize - within, end - position)
                let entry = try map.entry(at: block)
                let device = try session.dataBlock(entry, of: file, fileBlock: block).map { session.layout.block($0) + within }
                if let last = extents.last, last.offset + UInt64(last.length) == position,
                   (last.deviceOffset == nil && device == nil)
                    || (last.deviceOffset != nil && device != nil && last.deviceOffset! + UInt64(last.length) == device!) {
                    extents[extents.count - 1].length += Int(length)
                } else {
                    extents.append(FileExtent(offset: position, length: Int(length), deviceOffset: device))
                }
                position += length
            }
            return body(extents)
        }
    }
}
