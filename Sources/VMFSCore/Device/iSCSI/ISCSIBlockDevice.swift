internal import CISCSI
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// A LUN reached over iSCSI in user space (libiscsi): one iSCSI session per open device, so two
/// opens — two processes, two "hosts" — are two initiators to the target and share nothing.
///
/// Reads and writes are split into commands of at most 1 MiB and a batch (``perform(_:)``)
/// puts all of its commands in flight at once. A command that meets a dropped connection is
/// retried on a new one until the command timeout (the volume's I/O timeout T once mounted)
/// runs out; then it fails and the host, unable to renew its heartbeat, fences itself.
public final class ISCSIBlockDevice: SCSIStorage, @unchecked Sendable {
    /// Where the LUN is.
    public let address: ISCSIAddress
    /// The URL without its password.
    public let path: String
    public let size: UInt64
    public let alignment: Int
    public let usesDirectIO = true
    public let isReadOnly: Bool
    public let logicalBlockSize: Int
    /// True when UNMAP deallocates and unmapped blocks read as zeros (thin LUN).
    public let unmapReadsZeros: Bool

    /// The C session (`cvi_session *`); used by the command engine only.
    let session: OpaquePointer
    let timeoutMilliseconds = Mutex<UInt32>(8000)
    let conflictHandler = Mutex<(@Sendable () -> Bool)?>(nil)
    let gate = CommandGate()
    /// Unit attentions seen (any reason), for diagnostics and tests.
    let unitAttentions = Mutex<Int>(0)
    private let rangeLocks = KeyedLocks<UInt64>()
    private let edgeLocks = EdgeSectorLocks()

    /// Longest transfer of one command.
    static let maximumTransfer = 1 << 20

    /// Connects to the LUN at `url` and logs in.
    ///
    /// - Throws: ``VMFSError`` naming the portal, target or LUN: `invalidArgument` for a malformed
    ///   URL, `io` for an unreachable portal, `notFound` for an unknown target name or LUN,
    ///   `permissionDenied` for refused credentials, `timedOut` for a login that did not finish.
    public convenience init(url: String, readOnly: Bool = false, connectTimeoutMilliseconds: Int32 = 10_000) throws(VMFSError) {
        try self.init(address: ISCSIAddress(parsing: url), readOnly: readOnly, connectTimeoutMilliseconds: connectTimeoutMilliseconds)
    }

    /// Connects to the LUN at `address` and logs in.
    public init(address: ISCSIAddress, readOnly: Bool = false, connectTimeoutMilliseconds: Int32 = 10_000) throws(VMFSError) {
        self.address = address
        path = address.description
        isReadOnly = readOnly
        var failure: Int32 = 0
        var message = [CChar](repeating: 0, count: 512)
        let initiator = Self.initiatorName()
        let opened: OpaquePointer? = address.portal.withCString { portal in
            address.target.withCString { target in
                initiator.withCString { initiatorName in
                    Self.withOptionalCString(address.user) { user in
                        Self.withOptionalCString(address.password) { password in
                            var params = cvi_connect_params(portal: portal, target: target, lun: Int32(address.lun), user: user,
                                                            password: password, initiator: initiatorName,
                                                            timeout_ms: connectTimeoutMilliseconds)
                            return cvi_open(&params, &failure, &message, message.count)
                        }
                    }
                }
            }
        }
        guard let opened else {
            throw Self.connectError(failure, message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                                    address: address)
        }
        session = opened
        logicalBlockSize = Int(cvi_block_size(opened))
        size = cvi_block_count(opened) &* UInt64(logicalBlockSize)
        alignment = max(logicalBlockSize, 512)
        unmapReadsZeros = cvi_unmap_zeroes(opened) != 0
    }

    deinit { cvi_close(session) }

    /// A unique initiator name per open: one process may open a LUN several times, each a host.
    private static let opens = Atomic<Int>(0)
    private static func initiatorName() -> String {
        var name = [CChar](repeating: 0, count: 64)
        _ = gethostname(&name, name.count - 1)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .lowercased().filter { $0.isLetter || $0.isNumber || $0 == "-" }
        let count = opens.wrappingAdd(1, ordering: .relaxed).newValue
        return "iqn.2026-11.org.vmfs-sw:\(host.isEmpty ? "host" : host).\(getpid()).\(count)"
    }

    private static func withOptionalCString<T>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
        guard let text else { return body(nil) }
        return text.withCString { body($0) }
    }

    private static func connectError(_ failure: Int32, message: String, address: ISCSIAddress) -> VMFSError {
        let location = VMFSError.Location(device: address.description)
        switch Int(failure) {
        case Int(CVI_CONNECT_UNREACHABLE.rawValue):
            return VMFSError(.io, "iSCSI portal \(address.portal) is unreachable (\(message))", location: location)
        case Int(CVI_CONNECT_NO_TARGET.rawValue):
            return VMFSError(.notFound, "iSCSI portal \(address.portal) has no target named \(address.target) (\(message))", location: location)
        case Int(CVI_CONNECT_AUTH.rawValue):
            let who = address.user.map { "as user \($0)" } ?? "without credentials"
            return VMFSError(.permissionDenied, "iSCSI target \(address.target) on \(address.portal) refused the login \(who): "
                             + "authentication failed (\(message))", location: location)
        case Int(CVI_CONNECT_NO_LUN.rawValue):
            return VMFSError(.notFound, "iSCSI target \(address.target) on \(address.portal) has no usable LUN \(address.lun) (\(message))",
                             location: location)
        case Int(CVI_CONNECT_TIMEOUT.rawValue):
            return VMFSError(.timedOut, "logging in to iSCSI target \(address.target) on \(address.portal) timed out (\(message))", location: location)
        default:
            return VMFSError(.io, "cannot log in to iSCSI target \(address.target) on \(address.portal): \(message)", location: location)
        }
    }

    // MARK: SCSIStorage basics

    public var targetDescription: String { path }
    /// How many times the session logged in again after its connection dropped.
    public var reconnections: UInt64 { cvi_epoch(session) }
    public var commandTimeoutMilliseconds: UInt32 { timeoutMilliseconds.withLock { $0 } }
    public func setCommandTimeout(milliseconds: UInt32) { timeoutMilliseconds.withLock { $0 = max(milliseconds, 50) } }
    public func setConflictHandler(_ handler: (@Sendable () -> Bool)?) { conflictHandler.withLock { $0 = handler } }

    // MARK: BlockDevice

    private func block(_ offset: UInt64) -> UInt64 { offset / UInt64(logicalBlockSize) }

    private func isAligned(_ offset: UInt64, _ count: Int) -> Bool {
        offset % UInt64(alignment) == 0 && count % alignment == 0
    }

    private func checkInside(_ offset: UInt64, _ length: UInt64, _ operation: String) throws(VMFSError) {
        guard offset <= size, length <= size - offset else {
            throw VMFSError(.invalidArgument, "\(operation) of \(length) bytes at byte \(offset) lies outside the LUN (\(size) bytes)",
                            location: .init(device: path, offset: offset))
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try perform([DeviceRequest(kind: .read, offset: offset, buffer: UnsafeMutableRawBufferPointer(start: base, count: buffer.count))])
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path, offset: offset)) }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try perform([DeviceRequest(kind: .write, offset: offset, buffer: UnsafeMutableRawBufferPointer(mutating: UnsafeRawBufferPointer(start: base, count: buffer.count)))])
    }

    public func flush() throws(VMFSError) {
        guard !isReadOnly else { return }
        var request = cvi_request()
        request.op = Int32(CVI_OP_SYNC.rawValue)
        try gate.shared { () throws(VMFSError) in _ = try run([request], policy: .init(what: "SYNCHRONIZE CACHE")) }
    }

    public func zero(offset: UInt64, length: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path)) }
        guard length > 0 else { return }
        try checkInside(offset, length, "zeroing")
        if unmapReadsZeros, offset % UInt64(alignment) == 0, length % UInt64(alignment) == 0,
           (try? unmap(offset: offset, length: length)) != nil { return }
        let chunk = Self.maximumTransfer
        let zeros = AlignedBuffer(count: chunk, alignment: 4096)
        var position = offset
        let end = offset + length
        while position < end {
            var batch: [DeviceRequest] = []
            while position < end && batch.count < 16 {
                let count = Int(min(UInt64(chunk), end - position))
                batch.append(DeviceRequest(kind: .write, offset: position, buffer: UnsafeMutableRawBufferPointer(rebasing: zeros.bytes[0..<count])))
                position += UInt64(count)
            }
            try zeros.withBytes { _ throws(VMFSError) in try perform(batch) }
        }
    }

    public func discard(offset: UInt64, length: UInt64) throws(VMFSError) {
        guard !isReadOnly, length > 0, unmapReadsZeros else { return }
        try checkInside(offset, length, "discard")
        let a = UInt64(alignment)
        let start = (offset + a - 1) / a * a
        let end = (offset + length) / a * a
        guard end > start else { return }
        _ = try? unmap(offset: start, length: end - start)
    }

    private func unmap(offset: UInt64, length: UInt64) throws(VMFSError) {
        var requests: [cvi_request] = []
        var position = offset
        let step = UInt64(1 << 30)
        while position < offset + length {
            let count = min(step, offset + length - position)
            var request = cvi_request()
            request.op = Int32(CVI_OP_UNMAP.rawValue)
            request.lba = block(position)
            request.blocks = UInt32(count / UInt64(logicalBlockSize))
            requests.append(request)
            position += count
        }
        try gate.shared { () throws(VMFSError) in _ = try run(requests, policy: .init(what: "UNMAP", isWrite: true)) }
    }

    public func perform(_ batch: [DeviceRequest]) throws(VMFSError) {
        if batch.isEmpty { return }
        if batch.contains(where: { $0.kind == .write }) && isReadOnly {
            throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path))
        }
        for request in batch where request.kind == .write { try checkInside(request.offset, UInt64(request.buffer.count), "write") }
        let unalignedWrites = batch.filter { $0.kind == .write && !isAligned($0.offset, $0.buffer.count) }
            .map { (offset: $0.offset, count: $0.buffer.count) }
        try edgeLocks.withEdges(of: unalignedWrites, alignment: alignment) { () throws(VMFSError) in try performHoldingEdges(batch) }
    }

    /// ``perform(_:)`` once the edge sectors of its unaligned writes are held.
    private func performHoldingEdges(_ batch: [DeviceRequest]) throws(VMFSError) {
        // Unaligned pieces go through bounce buffers (read-modify-write at the edges of a write).
        // Every bounce stays alive until its commands have completed: the commands point into it.
        var bounces: [AlignedBuffer] = []
        var readBacks: [(request: DeviceRequest, bounce: AlignedBuffer, start: UInt64)] = []
        var commands: [cvi_request] = []
        var isWrite = false
        for request in batch {
            guard request.buffer.count > 0, let base = request.buffer.baseAddress else { continue }
            if isAligned(request.offset, request.buffer.count) {
                appendCommands(&commands, kind: request.kind, offset: request.offset, base: base, count: request.buffer.count)
            } else {
                let a = UInt64(alignment)
                let start = request.offset / a * a
                let end = (request.offset + UInt64(request.buffer.count) + a - 1) / a * a
                let bounce = AlignedBuffer(count: Int(end - start), alignment: 4096, zeroed: false)
                bounces.append(bounce)
                if request.kind == .write {
                    try readEdges(into: bounce, start: start, end: end, request: request)
                    (bounce.start + Int(request.offset - start)).copyMemory(from: base, byteCount: request.buffer.count)
                    appendCommands(&commands, kind: .write, offset: start, base: bounce.start, count: bounce.count)
                } else {
                    appendCommands(&commands, kind: .read, offset: start, base: bounce.start, count: bounce.count)
                    readBacks.append((request, bounce, start))
                }
            }
            if request.kind == .write { isWrite = true }
        }
        try withExtendedLifetime(bounces) { () throws(VMFSError) in
            try gate.shared { () throws(VMFSError) in
                _ = try run(commands, policy: .init(what: isWrite ? "WRITE(16)" : "READ(16)", isWrite: isWrite))
            }
        }
        for (request, bounce, start) in readBacks {
            if let base = request.buffer.baseAddress {
                base.copyMemory(from: bounce.start + Int(request.offset - start), byteCount: request.buffer.count)
            }
        }
    }

    /// Splits one transfer into commands of at most ``maximumTransfer`` bytes; the part past the
    /// end of the LUN of a read reads as zeros.
    private func appendCommands(_ commands: inout [cvi_request], kind: DeviceRequest.Kind, offset: UInt64,
                                base: UnsafeMutableRawPointer, count: Int) {
        var done = 0
        while done < count {
            let position = offset + UInt64(done)
            var piece = min(Self.maximumTransfer, count - done)
            if kind == .read {
                if position >= size {
                    (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: count - done)
                    return
                }
                piece = Int(min(UInt64(piece), size - position))
            }
            var request = cvi_request()
            request.op = Int32(kind == .read ? CVI_OP_READ.rawValue : CVI_OP_WRITE.rawValue)
            request.lba = block(position)
            request.blocks = UInt32(piece / logicalBlockSize)
            request.buffer = base + done
            request.length = UInt32(piece)
            commands.append(request)
            done += piece
        }
    }

    private func readEdges(into bounce: AlignedBuffer, start: UInt64, end: UInt64, request: DeviceRequest) throws(VMFSError) {
        let a = alignment
        var edges: [DeviceRequest] = []
        if start < request.offset {
            edges.append(DeviceRequest(kind: .read, offset: start, buffer: UnsafeMutableRawBufferPointer(rebasing: bounce.bytes[0..<a])))
        }
        if end > request.offset + UInt64(request.buffer.count) && !(start < request.offset && end - start == UInt64(a)) {
            let last = bounce.count - a
            edges.append(DeviceRequest(kind: .read, offset: end - UInt64(a), buffer: UnsafeMutableRawBufferPointer(rebasing: bounce.bytes[last..<(last + a)])))
        }
        if !edges.isEmpty { try perform(edges) }
    }

    /// Process-local only: byte-range locks cannot exclude other machines. Volumes on a LUN use
    /// ATS, SCSI-2 reservations or Disk Paxos instead (refused at mount otherwise).
    public func lockRange(offset: UInt64, length: UInt64) throws(VMFSError) { rangeLocks.lock(offset) }
    public func unlockRange(offset: UInt64, length: UInt64) { rangeLocks.unlock(offset) }
}
