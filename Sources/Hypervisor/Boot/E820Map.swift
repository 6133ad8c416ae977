/// One entry of the BIOS e820 memory map handed to Linux in the zero page.
public struct E820Entry: Sendable, Equatable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
    }

    public var address: UInt64
    public var size: UInt64
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }
}

/// The PC memory map of a guest: conventional memory below the MP-table/BIOS area, RAM from 1 MiB,
/// and RAM above 4 GiB when the guest has more than fits below the MMIO hole.
enum E820Map {
    /// Start of the reserved "system memory" area that holds the MP table (last KiB of base memory).
    static let systemMemoryStart: UInt64 = 0x9_FC00
    static let highMemoryBase: UInt64 = 0x10_0000

    static func entries(for regions: [GuestMemoryRegion]) -> [E820Entry] {
        var entries = [E820Entry(address: 0, size: systemMemoryStart, kind: .ram),
                       E820Entry(address: systemMemoryStart, size: highMemoryBase - systemMemoryStart, kind: .reserved)]
        for region in regions {
            let start = max(region.guestAddress, highMemoryBase)
            guard region.guestEnd > start else { continue }
            entries.append(E820Entry(address: start, size: region.guestEnd - start, kind: .ram))
        }
        return entries
    }
}
