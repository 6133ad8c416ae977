internal import Synchronization
/// Pages of guest memory written since the last harvest: KVM's dirty log of the guest's writes
/// ORed with the VMM's own writes (``GuestMemory/markDirty(_:count:)``), per memory region.
public struct DirtyPages: Sendable, Equatable {
    /// One bitmap per ``GuestMemory/regions`` entry, bit `i` = page `i` of that region.
    public var bitmaps: [[UInt64]]
    public var regions: [GuestMemoryRegion]

    public init(regions: [GuestMemoryRegion], bitmaps: [[UInt64]]) {
        self.regions = regions
        self.bitmaps = bitmaps
    }

    /// Every page of `regions` set (the first pass of a migration sends all of memory).
    public static func all(_ regions: [GuestMemoryRegion]) -> DirtyPages {
        DirtyPages(regions: regions, bitmaps: regions.map { region in
            let pages = Int(region.size / 4096)
            var words = [UInt64](repeating: .max, count: (pages + 63) / 64)
            if pages % 64 != 0 { words[words.count - 1] = (UInt64(1) << UInt64(pages % 64)) - 1 }
            return words
        })
    }

    /// No page set.
    public static func none(_ regions: [GuestMemoryRegion]) -> DirtyPages {
        DirtyPages(regions: regions, bitmaps: regions.map { [UInt64](repeating: 0, count: (Int($0.size / 4096) + 63) / 64) })
    }

    /// How many pages are set.
    public var count: Int { bitmaps.reduce(0) { $0 + $1.reduce(0) { $0 + $1.nonzeroBitCount } } }

    /// Adds the pages of `other` (same layout).
    public mutating func formUnion(_ other: DirtyPages) {
        for region in bitmaps.indices where region < other.bitmaps.count {
            for word in bitmaps[region].indices where word < other.bitmaps[region].count {
                bitmaps[region][word] |= other.bitmaps[region][word]
            }
        }
    }

    /// True when the page at guest-physical `address` is set.
    public func contains(_ address: UInt64) -> Bool {
        for (index, region) in regions.enumerated() where address >= region.guestAddress && address < region.guestEnd {
            let page = Int((address - region.guestAddress) / 4096)
            return bitmaps[index][page / 64] & (UInt64(1) << UInt64(page % 64)) != 0
        }
        return false
    }

    /// Calls `body` with each run of consecutive set pages: (guest-physical start, page count),
    /// runs at most `maximumRun` pages long.
    public func forEachRun(maximumRun: Int = 64, _ body: (UInt64, Int) throws -> Void) rethrows {
        for (index, region) in regions.enumerated() {
            let words = bitmaps[index]
            var runStart = -1
            var runLength = 0
            for (wordIndex, word) in words.enumerated() {
                if word == 0 && runStart < 0 { continue }
                for bit in 0..<64 {
                    let page = wordIndex * 64 + bit
                    if word & (UInt64(1) << UInt64(bit)) != 0 {
                        if runStart < 0 { runStart = page; runLength = 0 }
                        runLength += 1
                        if runLength == maximumRun {
                            try body(region.guestAddress + UInt64(runStart) * 4096, runLength)
                            runStart = -1
                        }
                    } else if runStart >= 0 {
                        try body(region.guestAddress + UInt64(runStart) * 4096, runLength)
                        runStart = -1
                    }
                }
            }
            if runStart >= 0 { try body(region.guestAddress + UInt64(runStart) * 4096, runLength) }
        }
    }
}

extension VirtualMachine {
    /// Starts recording written pages: KVM's dirty log on every memory slot plus the VMM's own
    /// writes. The first ``takeDirtyPages()`` returns what was written since this call.
    public func startDirtyTracking() throws(HypervisorError) {
        try stateLock.withLock { _ throws(HypervisorError) in
            memory.vmmWrites.setTracking(true)
            for (slot, region) in memory.regions.enumerated() {
                try machine.setMemoryRegion(slot: UInt32(slot), guestPhysicalAddress: region.guestAddress, size: region.size,
                                            hostAddress: memory.base + Int(region.hostOffset), logDirtyPages: true)
                // Enabling starts a fresh log; read it once so nothing from before counts.
                _ = try machine.dirtyLog(slot: UInt32(slot), pageCount: Int(region.size / 4096))
            }
        }
    }

    /// The pages written since the previous call (or ``startDirtyTracking()``), and clears them.
    public func takeDirtyPages() throws(HypervisorError) -> DirtyPages {
        try stateLock.withLock { _ throws(HypervisorError) -> DirtyPages in
            var bitmaps: [[UInt64]] = []
            for (slot, region) in memory.regions.enumerated() {
                let pages = Int(region.size / 4096)
                var words = try machine.dirtyLog(slot: UInt32(slot), pageCount: pages)
                let firstWord = Int(region.hostOffset / 4096) / 64
                memory.vmmWrites.take(words: firstWord..<(firstWord + words.count), into: &words)
                bitmaps.append(words)
            }
            return DirtyPages(regions: memory.regions, bitmaps: bitmaps)
        }
    }

    /// Stops recording (a migration ended or was cancelled): slots go back to their configured logging.
    public func stopDirtyTracking() {
        stateLock.withLock { _ in
            memory.vmmWrites.setTracking(false)
            for (slot, region) in memory.regions.enumerated() {
                try? machine.setMemoryRegion(slot: UInt32(slot), guestPhysicalAddress: region.guestAddress, size: region.size,
                                             hostAddress: memory.base + Int(region.hostOffset),
                                             logDirtyPages: configuration.logDirtyPages)
            }
        }
    }

    /// Auto-converge: holds the vCPUs out of the guest for `percent` (0 – 99) of every 10 ms.
    public func setThrottle(percent: Int) {
        throttle.set(percent: percent) { [weak self] held in self?.holdForThrottle(held) }
    }

    /// The current throttle percentage.
    public var throttlePercent: Int { throttle.percent }
}
