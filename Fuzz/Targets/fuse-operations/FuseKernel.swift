internal import CFuse
@testable internal import VMFSFuse
internal import VMFSCore
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's side of one FUSE connection, without a kernel: a libfuse session whose replies
/// go to ``Replies`` (`fuse_session_custom_io`), fed requests with `fuse_session_process_buf`.
/// It remembers what a kernel remembers (node ids looked up, file and directory handles
/// opened) and checks what a kernel relies on: every request but FORGET is answered exactly
/// once, with a well-formed reply.
final class FuseKernel {
    let session: OpaquePointer
    private var unique: UInt64 = 1
    /// Node ids the daemon returned (the root is 1).
    private(set) var nodes: [UInt64] = [1]
    /// File handles the daemon returned and has not released, with their node ids.
    private(set) var files: [(fh: UInt64, node: UInt64)] = []
    /// Directory handles.
    private(set) var directories: [UInt64] = []

    /// A session with the daemon's operation table and `options` (what `-o` gives libfuse).
    init?(fileSystem: FileSystem, options: [String]) {
        var operations = Operations.table()
        let strings: [String] = ["vmfs-fuse", "-o", options.joined(separator: ",")]
        var argv = strings.map { strdup($0) }
        defer { for argument in argv { free(argument) } }
        let created = argv.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            var arguments = fuse_args(argc: Int32(buffer.count), argv: buffer.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&arguments) }
            return fuse_session_new(&arguments, &operations, MemoryLayout<fuse_lowlevel_ops>.size,
                                    Unmanaged.passUnretained(fileSystem).toOpaque())
        }
        guard let created else { return nil }
        session = created
        fileSystem.attach(session: created)
        var io = Replies.io
        guard fuse_session_custom_io(created, &io, open("/dev/null", O_RDWR | O_CLOEXEC)) == 0 else {
            fuse_session_destroy(created)
            return nil
        }
    }

    /// Ends the session (libfuse closes its descriptor).
    func destroy() { fuse_session_destroy(session) }

    /// Sends one request and returns the daemon's reply (payload after `fuse_out_header`), or
    /// `nil` for an error reply; checks the one-reply rule.
    @discardableResult
    func send(_ opcode: FuseOpcode, node: UInt64, _ arguments: [UInt8], uid: UInt32 = 0) -> [UInt8]? {
        unique += 1
        let message = FuseMessage.request(opcode, unique: unique, node: node, arguments: arguments, uid: uid, gid: uid)
        Replies.clear()
        message.withUnsafeBytes { raw in
            var buffer = fuse_buf()
            buffer.size = raw.count
            buffer.mem = UnsafeMutableRawPointer(mutating: raw.baseAddress)
            fuse_session_process_buf(session, &buffer)
        }
        let answers = Replies.take().filter { Self.unique(of: $0) == unique }  // notifications have unique 0
        if opcode == .forget || opcode == .batchForget {
            guard answers.isEmpty else { fatalError("fuzz oracle: FORGET was answered") }
            return nil
        }
        guard answers.count == 1, let reply = answers.first else {
            fatalError("fuzz oracle: \(opcode) was answered \(answers.count) times")
        }
        return check(reply, opcode: opcode)
    }

    private static func unique(of reply: [UInt8]) -> UInt64 {
        reply.count >= 16 ? (8..<16).reduce(UInt64(0)) { $0 | UInt64(reply[$1]) << (8 * UInt64($1 - 8)) } : 0
    }

    private static func integer<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type = T.self) -> T {
        (0..<MemoryLayout<T>.size).reduce(T.zero) { $0 | T(truncatingIfNeeded: bytes[offset + $1]) << (8 * $1) }
    }

    /// Checks `fuse_out_header` and records node ids and handles from successful replies.
    private func check(_ reply: [UInt8], opcode: FuseOpcode) -> [UInt8]? {
        guard reply.count >= 16, Self.integer(reply, at: 0, as: UInt32.self) == UInt32(reply.count) else {
            fatalError("fuzz oracle: a \(opcode) reply of \(reply.count) bytes has a wrong length field")
        }
        let error = Self.integer(reply, at: 4, as: Int32.self)
        guard error <= 0, error > -4096 else { fatalError("fuzz oracle: \(opcode) answered with error \(error)") }
        guard error == 0 else { return nil }
        let payload = Array(reply[16...])
        switch opcode {
        case .lookup:
            if payload.count >= 8 { remember(node: Self.integer(payload, at: 0)) }
        case .create:
            if payload.count >= 136 {
                let node: UInt64 = Self.integer(payload, at: 0)
                remember(node: node)
                files.append((Self.integer(payload, at: 128), node))
            }
        case .open:
            break  // recorded by the caller, which knows the node
        case .opendir:
            if payload.count >= 8 { directories.append(Self.integer(payload, at: 0)) }
        default:
            break
        }
        return payload
    }

    private func remember(node: UInt64) {
        if node != 0 && !nodes.contains(node) { nodes.append(node) }
    }

    /// Records a file handle from an OPEN reply.
    func opened(_ reply: [UInt8], node: UInt64) {
        if reply.count >= 8 { files.append((Self.integer(reply, at: 0), node)) }
    }

    /// Forgets a handle after RELEASE / RELEASEDIR.
    func released(file index: Int) { files.remove(at: index) }
    func released(directory index: Int) { directories.remove(at: index) }
}

/// Replies written by libfuse through the custom I/O of ``FuseKernel`` (one fuzz input runs at
/// a time, on one thread, so a global is the simple way to reach them from a C callback).
enum Replies {
    nonisolated(unsafe) private static var collected: [[UInt8]] = []

    static func clear() { collected.removeAll() }

    static func take() -> [[UInt8]] {
        defer { collected.removeAll() }
        return collected
    }

    static let io = fuse_custom_io(
        writev: { _, vector, count, _ in
            guard let vector else { return -Int(EINVAL) }
            var message: [UInt8] = []
            for i in 0..<Int(count) where vector[i].iov_len > 0 {
                message += UnsafeRawBufferPointer(start: vector[i].iov_base, count: vector[i].iov_len)
            }
            Replies.collected.append(message)
            return message.count
        },
        read: { _, _, _, _ in -Int(EIO) },
        splice_receive: nil,
        splice_send: nil)
}
