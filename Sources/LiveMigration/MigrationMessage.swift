internal import FoundationEssentials

/// What the source VMM tells the destination first, and the answer (JSON payloads).
public struct MigrationHello: Codable, Sendable, Equatable {
    /// This wire protocol's version (``MigrationProtocol/version``).
    public var protocolVersion: Int
    /// The machine-state format the source writes ("major.minor").
    public var stateFormat: String
    public var vmUUID: String
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    public var diskCount: Int
    public var streamCount: Int
    public var pageSize: Int

    public init(protocolVersion: Int = MigrationProtocol.version, stateFormat: String, vmUUID: String, vcpuCount: Int,
                memoryBytes: UInt64, diskCount: Int, streamCount: Int, pageSize: Int = 4096) {
        self.protocolVersion = protocolVersion
        self.stateFormat = stateFormat
        self.vmUUID = vmUUID
        self.vcpuCount = vcpuCount
        self.memoryBytes = memoryBytes
        self.diskCount = diskCount
        self.streamCount = streamCount
        self.pageSize = pageSize
    }
}

public struct MigrationHelloReply: Codable, Sendable, Equatable {
    public var accepted: Bool
    /// Why not, naming both sides' values.
    public var reason: String?
    public var protocolVersion: Int
    public var stateFormat: String

    public init(accepted: Bool, reason: String?, protocolVersion: Int = MigrationProtocol.version, stateFormat: String) {
        self.accepted = accepted
        self.reason = reason
        self.protocolVersion = protocolVersion
        self.stateFormat = stateFormat
    }
}

/// The protocol's constants.
public enum MigrationProtocol {
    /// Version of the stream protocol of `docs/MIGRATION.md`.
    public static let version = 1
    /// Pages per data record (256 KiB).
    public static let pagesPerRecord = 64
    public static let pageSize = 4096
}

/// One message on a migration stream (`docs/MIGRATION.md`, "Messages"). The plaintext of a
/// record is `u8 type`, 7 reserved zero bytes, then the body.
public enum MigrationMessage: Sendable, Equatable {
    // Source → destination.
    case hello(MigrationHello)
    /// `count` whole pages starting at guest-physical `address`.
    case pages(address: UInt64, count: Int, bytes: [UInt8])
    /// `count` pages at `address` read as zeros.
    case zeros(address: UInt64, count: UInt64)
    /// Everything before this on this stream belongs to round `round` or earlier; acknowledge.
    case barrier(round: UInt64)
    /// The machine state (`docs/VM-STATE.md`), after the last pages.
    case state([UInt8])
    /// Post-copy: these page ranges (address, pages) are not valid at the destination yet.
    case neededRanges([PageRange])
    /// Post-copy: every page is pushed; the source is done.
    case complete
    case abort(String)
    // Destination → source.
    case helloReply(MigrationHelloReply)
    case barrierReached(round: UInt64)
    /// The state is restored; the destination waits to be resumed.
    case stateApplied
    /// Post-copy: a vCPU or device needs this page now.
    case pageRequest(address: UInt64)
    /// Post-copy: every needed page arrived.
    case postCopyDone
    case failed(String)

    var type: UInt8 {
        switch self {
        case .hello: 0x01
        case .pages: 0x02
        case .zeros: 0x03
        case .barrier: 0x04
        case .state: 0x05
        case .neededRanges: 0x06
        case .complete: 0x07
        case .abort: 0x08
        case .helloReply: 0x81
        case .barrierReached: 0x82
        case .stateApplied: 0x83
        case .pageRequest: 0x84
        case .postCopyDone: 0x85
        case .failed: 0x86
        }
    }

    /// The plaintext of a ``pages(address:count:bytes:)`` message built straight from guest
    /// memory (one copy).
    static func pagesPlaintext(address: UInt64, count: Int, from source: UnsafeRawPointer) -> [UInt8] {
        let dataBytes = count * MigrationProtocol.pageSize
        return [UInt8](unsafeUninitializedCapacity: 24 + dataBytes) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: UInt64(0x02).littleEndian, toByteOffset: 0, as: UInt64.self)  // type 0x02, 7 reserved zero bytes
            raw.storeBytes(of: address.littleEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 16, as: UInt32.self)
            raw.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)
            (raw.baseAddress! + 24).copyMemory(from: source, byteCount: dataBytes)
            initialized = 24 + dataBytes
        }
    }

    /// Most ranges in one ``neededRanges(_:)`` message.
    static let maximumRanges = 200_000

    func encoded() -> [UInt8] {
        var w = WireWriter()
        w.put(type)
        w.zeros(7)
        switch self {
        case .hello(let hello): w.put(Array((try? JSONEncoder().encode(hello)) ?? Data()))
        case .helloReply(let reply): w.put(Array((try? JSONEncoder().encode(reply)) ?? Data()))
        case .pages(let address, let count, let bytes):
            w.put(address)
            w.put(UInt32(count))
            w.put(UInt32(0))
            w.put(bytes)
        case .zeros(let address, let count):
            w.put(address)
            w.put(count)
        case .barrier(let round), .barrierReached(let round):
            w.put(round)
        case .state(let bytes):
            w.put(bytes)
        case .neededRanges(let ranges):
            w.put(UInt32(ranges.count))
            w.put(UInt32(0))
            for range in ranges {
                w.put(range.address)
                w.put(range.count)
            }
        case .pageRequest(let address):
            w.put(address)
        case .abort(let text), .failed(let text):
            w.put(Array(text.utf8.prefix(4096)))
        case .complete, .stateApplied, .postCopyDone:
            break
        }
        return w.bytes
    }

    /// Decodes the plaintext of a record; every count is checked against the bytes present.
    static func decode(_ bytes: ArraySlice<UInt8>, stream: Int) throws(MigrationError) -> MigrationMessage {
        var r = WireReader(bytes, stream: stream)
        let type = try r.u8("type")
        guard try r.take(7, "reserved").allSatisfy({ $0 == 0 }) else {
            throw MigrationError(.malformed, "stream \(stream): message 0x\(String(type, radix: 16)) has non-zero reserved bytes")
        }
        func json<T: Decodable>(_ kind: T.Type, _ name: String) throws(MigrationError) -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(r.rest())) } catch {
                throw MigrationError(.malformed, "stream \(stream): \(name) is not valid: \(error)")
            }
        }
        let message: MigrationMessage
        switch type {
        case 0x01: return .hello(try json(MigrationHello.self, "hello"))
        case 0x81: return .helloReply(try json(MigrationHelloReply.self, "hello reply"))
        case 0x02:
            let address = try r.u64("page address")
            let count = Int(try r.u32("page count"))
            _ = try r.u32("reserved")
            guard count >= 1, count <= MigrationProtocol.pagesPerRecord, address % UInt64(MigrationProtocol.pageSize) == 0 else {
                throw MigrationError(.malformed, "stream \(stream): pages record of \(count) pages at 0x\(String(address, radix: 16)) (1…\(MigrationProtocol.pagesPerRecord) aligned pages)")
            }
            message = .pages(address: address, count: count, bytes: try r.take(count * MigrationProtocol.pageSize, "page data"))
        case 0x03:
            let address = try r.u64("zero address")
            let count = try r.u64("zero count")
            guard address % UInt64(MigrationProtocol.pageSize) == 0, count >= 1, count <= 1 << 36 else {
                throw MigrationError(.malformed, "stream \(stream): zero range of \(count) pages at 0x\(String(address, radix: 16))")
            }
            message = .zeros(address: address, count: count)
        case 0x04: message = .barrier(round: try r.u64("round"))
        case 0x82: message = .barrierReached(round: try r.u64("round"))
        case 0x05: return .state(r.rest())
        case 0x06:
            let count = Int(try r.u32("range count"))
            _ = try r.u32("reserved")
            guard count <= maximumRanges else { throw MigrationError(.malformed, "stream \(stream): \(count) needed ranges; at most \(maximumRanges)") }
            var ranges: [PageRange] = []
            for index in 0..<count {
                let address = try r.u64("range \(index) address")
                let pages = try r.u64("range \(index) pages")
                guard address % UInt64(MigrationProtocol.pageSize) == 0, pages >= 1, pages <= 1 << 36 else {
                    throw MigrationError(.malformed, "stream \(stream): needed range \(index) of \(pages) pages at 0x\(String(address, radix: 16))")
                }
                ranges.append(PageRange(address: address, count: pages))
            }
            message = .neededRanges(ranges)
        case 0x84:
            let address = try r.u64("requested page")
            guard address % UInt64(MigrationProtocol.pageSize) == 0 else {
                throw MigrationError(.malformed, "stream \(stream): page request for unaligned 0x\(String(address, radix: 16))")
            }
            message = .pageRequest(address: address)
        case 0x07: message = .complete
        case 0x83: message = .stateApplied
        case 0x85: message = .postCopyDone
        case 0x08: return .abort(String(decoding: r.rest(), as: UTF8.self))
        case 0x86: return .failed(String(decoding: r.rest(), as: UTF8.self))
        default:
            throw MigrationError(.malformed, "stream \(stream): unknown message type 0x\(String(type, radix: 16))")
        }
        guard r.remaining == 0 else {
            throw MigrationError(.malformed, "stream \(stream): message 0x\(String(type, radix: 16)) has \(r.remaining) extra bytes")
        }
        return message
    }
}

/// A run of pages.
public struct PageRange: Sendable, Equatable {
    public var address: UInt64
    public var count: UInt64

    public init(address: UInt64, count: UInt64) {
        self.address = address
        self.count = count
    }
}

struct WireWriter {
    private(set) var bytes: [UInt8] = []

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func put(_ data: [UInt8]) { bytes.append(contentsOf: data) }
    mutating func zeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
}

struct WireReader {
    let bytes: ArraySlice<UInt8>
    let stream: Int
    private var offset: Int

    init(_ bytes: ArraySlice<UInt8>, stream: Int) {
        self.bytes = bytes
        self.stream = stream
        offset = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - offset }

    mutating func take(_ count: Int, _ field: String) throws(MigrationError) -> [UInt8] {
        guard count >= 0, count <= remaining else {
            throw MigrationError(.malformed, "stream \(stream): \(field) needs \(count) bytes; \(remaining) are left in the message")
        }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.endIndex }
        return Array(bytes[offset...])
    }

    mutating func u8(_ field: String) throws(MigrationError) -> UInt8 { try take(1, field)[0] }
    mutating func u32(_ field: String) throws(MigrationError) -> UInt32 {
        try take(4, field).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }
    mutating func u64(_ field: String) throws(MigrationError) -> UInt64 {
        try take(8, field).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}
