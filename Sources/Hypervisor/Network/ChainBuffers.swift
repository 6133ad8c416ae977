/// The buffers of one descriptor chain resolved to host memory, all in one direction, each inside
/// guest RAM (checked once, with overflow-safe arithmetic), with their total length.
struct ChainBuffers {
    var segments: [UnsafeMutableRawBufferPointer]
    var total: Int

    /// The chain's buffers when every descriptor is `writable` (or every one is not), lies inside
    /// guest memory, and together they hold at most `limit` bytes; nil otherwise.
    init?(_ chain: DescriptorChain, writable: Bool, memory: GuestMemory, limit: Int) {
        var segments: [UnsafeMutableRawBufferPointer] = []
        var total = 0
        for descriptor in chain.descriptors {
            guard descriptor.isDeviceWritable == writable else { return nil }
            guard let pointer = memory.hostPointer(at: descriptor.address, count: UInt64(descriptor.length)) else { return nil }
            total += Int(descriptor.length)
            guard total <= limit else { return nil }
            segments.append(UnsafeMutableRawBufferPointer(start: pointer, count: Int(descriptor.length)))
        }
        self.segments = segments
        self.total = total
    }

    /// Copies up to `count` bytes starting `offset` bytes into the chain.
    func gather(offset: Int, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var skip = offset
        for segment in segments where bytes.count < count {
            if skip >= segment.count {
                skip -= segment.count
                continue
            }
            let take = min(segment.count - skip, count - bytes.count)
            bytes += UnsafeRawBufferPointer(rebasing: segment[skip..<(skip + take)])
            skip = 0
        }
        return bytes
    }

    /// The chain's bytes from `offset` on, as read-only views (no copy).
    func views(from offset: Int) -> [UnsafeRawBufferPointer] {
        var views: [UnsafeRawBufferPointer] = []
        var skip = offset
        for segment in segments {
            if skip >= segment.count {
                skip -= segment.count
                continue
            }
            views.append(UnsafeRawBufferPointer(rebasing: segment[skip...]))
            skip = 0
        }
        return views
    }

    /// Writes `source` into the chain starting `offset` bytes in; returns the bytes written
    /// (fewer when the chain ends first).
    @discardableResult
    func scatter(_ source: UnsafeRawBufferPointer, at offset: Int) -> Int {
        var written = 0
        var skip = offset
        for segment in segments where written < source.count {
            if skip >= segment.count {
                skip -= segment.count
                continue
            }
            let take = min(segment.count - skip, source.count - written)
            UnsafeMutableRawBufferPointer(rebasing: segment[skip..<(skip + take)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[written..<(written + take)]))
            written += take
            skip = 0
        }
        return written
    }
}
