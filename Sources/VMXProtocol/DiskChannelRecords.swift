/// Operations on a disk channel.
public enum DiskOperation: UInt16, Sendable {
    case read = 1
    case write = 2
    case flush = 3
    /// Deallocate; the range need not read as zeros afterwards (but does on VMFS).
    case discard = 4
    /// The range must read as zeros afterwards; deallocating it is allowed.
    case writeZeroes = 5
    /// The range must read as zeros afterwards and stay allocated.
    case writeZeroesKeepAllocated = 6
}

/// How a disk request ended.
public enum DiskCompletionStatus: UInt16, Sendable {
    case ok = 0
    case ioError = 1
    case unsupported = 2
    /// The range is outside the disk.
    case outOfRange = 3
    /// The agent may not write (fenced, or the VM's locks were lost).
    case fenced = 4
    /// The request itself was malformed (bad magic, window range, operation).
    case invalid = 5
}

/// A disk request record, 48 bytes little-endian (`docs/VMX-PROTOCOL.md`):
/// `u32 magic "VDRQ" @0, u16 version @4, u16 operation @6, u64 tag @8, u64 offset @16,
/// u64 length @24, u64 window offset @32, u64 reserved (0) @40`.
public struct DiskRequest: Sendable, Equatable {
    public static let size = 48
    public static let magic: UInt32 = 0x5152_4456  // "VDRQ"

    public var tag: UInt64
    public var operation: DiskOperation
    public var offset: UInt64
    public var length: UInt64
    /// Where the data is (write) or goes (read) in the data window.
    public var windowOffset: UInt64

    public init(tag: UInt64, operation: DiskOperation, offset: UInt64, length: UInt64, windowOffset: UInt64) {
        self.tag = tag
        self.operation = operation
        self.offset = offset
        self.length = length
        self.windowOffset = windowOffset
    }

    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        LittleEndianBytes.put(Self.magic, into: &bytes, at: 0)
        LittleEndianBytes.put(VMXProtocol.version, into: &bytes, at: 4)
        LittleEndianBytes.put(operation.rawValue, into: &bytes, at: 6)
        LittleEndianBytes.put(tag, into: &bytes, at: 8)
        LittleEndianBytes.put(offset, into: &bytes, at: 16)
        LittleEndianBytes.put(length, into: &bytes, at: 24)
        LittleEndianBytes.put(windowOffset, into: &bytes, at: 32)
        return bytes
    }

    /// Outcome of decoding a record from a VMM.
    public enum Decoded: Sendable, Equatable {
        case request(DiskRequest)
        /// Not a usable request; `tag` is the tag to answer with when the record carried one.
        case invalid(tag: UInt64?, reason: String)
    }

    /// Decodes a received record. Range checks against the disk and window are the server's.
    public static func decode(_ bytes: ArraySlice<UInt8>) -> Decoded {
        guard bytes.count == size else { return .invalid(tag: nil, reason: "request record of \(bytes.count) bytes, expected \(size)") }
        guard LittleEndianBytes.get(bytes, at: 0) as UInt32 == magic else { return .invalid(tag: nil, reason: "bad request magic") }
        let tag: UInt64 = LittleEndianBytes.get(bytes, at: 8)
        guard LittleEndianBytes.get(bytes, at: 4) as UInt16 == VMXProtocol.version else {
            return .invalid(tag: tag, reason: "request version is not \(VMXProtocol.version)")
        }
        let rawOperation: UInt16 = LittleEndianBytes.get(bytes, at: 6)
        guard let operation = DiskOperation(rawValue: rawOperation) else {
            return .invalid(tag: tag, reason: "unknown operation \(rawOperation)")
        }
        guard LittleEndianBytes.get(bytes, at: 40) as UInt64 == 0 else { return .invalid(tag: tag, reason: "reserved field is not zero") }
        return .request(DiskRequest(tag: tag, operation: operation, offset: LittleEndianBytes.get(bytes, at: 16),
                                    length: LittleEndianBytes.get(bytes, at: 24), windowOffset: LittleEndianBytes.get(bytes, at: 32)))
    }
}

/// A disk completion record, 32 bytes little-endian:
/// `u32 magic "VDCP" @0, u16 version @4, u16 status @6, u64 tag @8, i32 errno @16,
/// u32 reserved (0) @20, u64 bytes transferred @24`.
public struct DiskCompletion: Sendable, Equatable {
    public static let size = 32
    public static let magic: UInt32 = 0x5043_4456  // "VDCP"

    public var tag: UInt64
    public var status: DiskCompletionStatus
    /// The errno of a failed system call behind an error status, else 0.
    public var errno: Int32
    public var bytes: UInt64

    public init(tag: UInt64, status: DiskCompletionStatus, errno: Int32 = 0, bytes: UInt64 = 0) {
        self.tag = tag
        self.status = status
        self.errno = errno
        self.bytes = bytes
    }

    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        LittleEndianBytes.put(Self.magic, into: &bytes, at: 0)
        LittleEndianBytes.put(VMXProtocol.version, into: &bytes, at: 4)
        LittleEndianBytes.put(status.rawValue, into: &bytes, at: 6)
        LittleEndianBytes.put(tag, into: &bytes, at: 8)
        LittleEndianBytes.put(errno, into: &bytes, at: 16)
        LittleEndianBytes.put(self.bytes, into: &bytes, at: 24)
        return bytes
    }

    /// Decodes a completion from the agent; nil when it is not a valid record.
    public static func decode(_ bytes: ArraySlice<UInt8>) -> DiskCompletion? {
        guard bytes.count == size, LittleEndianBytes.get(bytes, at: 0) as UInt32 == magic,
              LittleEndianBytes.get(bytes, at: 4) as UInt16 == VMXProtocol.version,
              let status = DiskCompletionStatus(rawValue: LittleEndianBytes.get(bytes, at: 6)) else { return nil }
        return DiskCompletion(tag: LittleEndianBytes.get(bytes, at: 8), status: status,
                              errno: LittleEndianBytes.get(bytes, at: 16), bytes: LittleEndianBytes.get(bytes, at: 24))
    }
}
