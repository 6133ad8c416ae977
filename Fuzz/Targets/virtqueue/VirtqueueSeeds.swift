import FuzzSupport

/// Seeds: one well-formed request of each type (IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES)
/// on an initialized queue of 16, each made available and notified (see GuestDriver).
enum VirtqueueSeeds {
    typealias E = SeedEncoding
    static let header: UInt32 = 0x8_0000
    static let data: UInt32 = 0x9_0000
    static let status: UInt32 = 0xA_0000
    static let range: UInt32 = 0x8_1000

    /// Action 1: descriptor `index` = (address, length, flags, next).
    static func descriptor(_ index: UInt16, _ address: UInt32, _ length: UInt64, flags: UInt16, next: UInt16) -> [UInt8] {
        [1] + E.little(index) + [0] + E.little(address) + E.raw(length) + E.little(flags) + E.little(next)
    }

    /// Action 6: a request header of `type` (index into 0, 1, 4, 8, 11, 13) for `sector`.
    static func requestHeader(type: UInt8, sector: UInt64) -> [UInt8] { [6, 0, type] + E.raw(sector) }

    /// Makes chain 0 available and notifies queue 0.
    static let publish: [UInt8] = [2, 0] + E.little(UInt16(0)) + [3, 0]

    static func make() -> [(name: String, bytes: [UInt8])] {
        let next: UInt16 = 1
        let write: UInt16 = 2
        let statusDescriptor = { (index: UInt16) in descriptor(index, status, 1, flags: write, next: 0) }
        let read = requestHeader(type: 0, sector: 8) + descriptor(0, header, 16, flags: next, next: 1)
            + descriptor(1, data, 4096, flags: next | write, next: 2) + statusDescriptor(2) + publish
        let written = requestHeader(type: 1, sector: 16) + descriptor(0, header, 16, flags: next, next: 1)
            + descriptor(1, data, 8192, flags: next, next: 2) + statusDescriptor(2) + publish
        let flush = requestHeader(type: 2, sector: 0) + descriptor(0, header, 16, flags: next, next: 1) + statusDescriptor(1) + publish
        let identify = requestHeader(type: 3, sector: 0) + descriptor(0, header, 16, flags: next, next: 1)
            + descriptor(1, data, 20, flags: next | write, next: 2) + statusDescriptor(2) + publish
        func ranged(_ type: UInt8, flags: UInt32) -> [UInt8] {
            [7, 0] + E.raw(64) + E.little(UInt32(16)) + E.little(flags) + requestHeader(type: type, sector: 0)
                + descriptor(0, header, 16, flags: next, next: 1) + descriptor(1, range, 16, flags: next, next: 2)
                + statusDescriptor(2) + publish
        }
        return [
            ("read", [0] + read), ("write", [0] + written), ("flush", [0] + flush), ("get-id", [0] + identify),
            ("discard", [0] + ranged(4, flags: 0)), ("write-zeroes-unmap", [0] + ranged(5, flags: 1)),
            ("read-high-memory", [1] + read), ("read-queue-256", [8] + read + written),
        ]
    }
}
