@testable import VMFSCore
import FuzzSupport

/// A script of VMFSCore file operations decoded from fuzz input: reads, writes, truncation,
/// preallocation, hole punching, extent queries, attribute changes, creates, renames, removes
/// and recovery, with offsets and sizes biased towards the edges (``FuzzInput/extreme(_:)``)
/// and files picked among the seed's, the volume's and made-up names.
struct FileOperations {
    let volume: Volume
    /// The largest buffer one read or write uses.
    static let maximumTransfer: UInt64 = (2 << 20) + 4096
    static let maximumOperations = 24

    func run(_ input: inout FuzzInput) {
        let listed = ((try? volume.list()) ?? []).map(\.name)
        var names = SeedVolume.fileNames + listed
        var performed = 0
        while !input.isEmpty && performed < Self.maximumOperations {
            performed += 1
            let operation = input.byte() % 16
            let name = pickName(&input, names: names)
            switch operation {
            case 0: withHandle(name, .readOnly) { _ = try $0.read(count: transferSize(&input), at: input.extreme()) }
            case 1: withHandle(name, .readWrite) { try $0.write(bytes: pattern(&input), at: input.extreme()) }
            case 2: withHandle(name, .readWrite) { try $0.truncate(to: input.extreme()) }
            case 3:
                withHandle(name, .readWrite) {
                    try $0.allocate(offset: input.extreme(), length: input.extreme(), keepSize: input.flag(), eagerZero: input.flag())
                }
            case 4: withHandle(name, .readWrite) { try $0.punchHole(offset: input.extreme(), length: input.extreme()) }
            case 5:
                withHandle(name, .readOnly) {
                    _ = try $0.nextData(from: input.extreme())
                    _ = try $0.nextHole(from: input.extreme())
                    _ = try $0.status()
                }
            case 6:
                let changes = AttributeChanges(mode: input.flag() ? input.integer() : nil, uid: input.integer(), gid: nil,
                                               accessTime: Int64(bitPattern: input.extreme()),
                                               modificationTime: Int64(bitPattern: input.extreme()),
                                               size: input.flag() ? input.extreme() : nil)
                _ = try? volume.setAttributes(of: name, changes)
            case 7:
                if (try? volume.create(name)) != nil { names.append(name) }
            case 8: _ = try? volume.remove(name)
            case 9:
                let target = pickName(&input, names: names)
                let mode: RenameMode = [.replace, .noReplace, .exchange][Int(input.byte()) % 3]
                _ = try? volume.rename(name, to: target, mode: mode)
            case 10:
                _ = try? volume.statistics()
                _ = try? volume.hosts()
            case 11: _ = try? volume.sync()
            case 12:
                let slot = Int(input.integer(UInt16.self))
                let generation: UInt32 = input.integer()
                if let handle = try? volume.open(slot: slot % 300, generation: generation, access: input.flag() ? .readWrite : .readOnly) {
                    _ = try? handle.read(count: 4096, at: 0)
                    _ = try? handle.close()
                }
            case 13: _ = try? volume.recover(slot: Int(input.integer(UInt16.self)) % 80, force: input.flag())
            case 14: withHandle(name, .multiWriter) { try $0.write(bytes: pattern(&input), at: input.extreme()) }
            default:
                withHandle(name, .readWrite) {
                    _ = try $0.withDeviceExtents(offset: input.extreme(), count: Int(input.integer(UInt32.self) % (8 << 20))) { $0.count }
                    try $0.sync()
                }
            }
        }
    }

    /// A seed or volume name, or a made-up one (any bytes, including invalid UTF-8 made valid).
    private func pickName(_ input: inout FuzzInput, names: [String]) -> String {
        let choice = input.byte()
        if choice < 0xE0, !names.isEmpty { return names[Int(choice) % names.count] }
        return String(decoding: input.bytes(Int(input.byte()) % 140), as: UTF8.self)
    }

    /// A transfer size from input, at most ``maximumTransfer``.
    private func transferSize(_ input: inout FuzzInput) -> Int { Int(input.extreme() % (Self.maximumTransfer + 1)) }

    /// Bytes to write: a size from input, filled with a pattern.
    private func pattern(_ input: inout FuzzInput) -> [UInt8] {
        let count = transferSize(&input)
        return [UInt8](repeating: UInt8(truncatingIfNeeded: count | 1), count: count)
    }

    /// Opens `name` with `access`, runs `body` (its errors are expected) and closes.
    private func withHandle(_ name: String, _ access: FileAccess, _ body: (FileHandle) throws -> Void) {
        guard let handle = try? volume.open(name, access: access) else { return }
        try? body(handle)
        try? handle.close()
    }
}
