import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the errno and what was attempted.
struct SystemCallError: Error, Equatable, CustomStringConvertible {
    var code: Int32
    var call: String

    var description: String { "\(call): \(String(cString: strerror(code))) (errno \(code))" }
}

/// Plain system calls on files in a mount, with the errno kept (EBUSY, EPERM … are what the
/// tests check).
enum Posix {
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemCallError) -> Int32 {
        let descriptor = Foundation.open(path, flags | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw SystemCallError(code: errno, call: "open \(path)") }
        return descriptor
    }

    /// The errno `open` fails with, or nil when it succeeds (the descriptor is closed again).
    static func openError(_ path: String, _ flags: Int32) -> Int32? {
        do {
            let descriptor = try open(path, flags)
            Foundation.close(descriptor)
            return nil
        } catch {
            return error.code
        }
    }

    static func close(_ descriptor: Int32) throws(SystemCallError) {
        guard Foundation.close(descriptor) == 0 else { throw SystemCallError(code: errno, call: "close") }
    }

    static func write(_ descriptor: Int32, _ bytes: [UInt8], at offset: UInt64) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            guard count > 0 else { throw SystemCallError(code: errno, call: "pwrite at \(offset + UInt64(done))") }
            done += count
        }
    }

    static func read(_ descriptor: Int32, count: Int, at offset: UInt64) throws(SystemCallError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if got == 0 { break }
            guard got > 0 else { throw SystemCallError(code: errno, call: "pread at \(offset + UInt64(done))") }
            done += got
        }
        return Array(bytes[0..<done])
    }

    /// Writes `bytes` as the whole content of `path` (created or truncated), then closes it.
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(SystemCallError) {
        let descriptor = try open(path, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try write(descriptor, bytes, at: 0)
        } catch {
            Foundation.close(descriptor)
            throw error
        }
        try close(descriptor)
    }

    /// The whole content of `path`.
    static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let descriptor = try open(path, O_RDONLY)
        defer { Foundation.close(descriptor) }
        var size = Glibc.stat()
        guard fstat(descriptor, &size) == 0 else { throw SystemCallError(code: errno, call: "fstat \(path)") }
        return try read(descriptor, count: Int(size.st_size) + 1, at: 0)
    }

    static func stat(_ path: String) throws(SystemCallError) -> Glibc.stat {
        var info = Glibc.stat()
        guard fstatat(-100 /* AT_FDCWD */, path, &info, 0) == 0 else { throw SystemCallError(code: errno, call: "stat \(path)") }
        return info
    }

    /// The errno of a call that returns -1 on failure, or nil when it succeeded.
    static func errorOf(_ result: Int32) -> Int32? { result == 0 ? nil : errno }

    /// Names in a directory (without `.` and `..`), sorted.
    static func list(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }
}

/// Deterministic bytes for data checks.
func patternBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        let words = raw.count / 8
        let pointer = raw.baseAddress!
        for i in 0..<words {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            pointer.storeBytes(of: state &* 2685821657736338717, toByteOffset: i * 8, as: UInt64.self)
        }
        for i in (words * 8)..<raw.count { raw[i] = UInt8(truncatingIfNeeded: i &* 131 &+ Int(seed)) }
    }
    return bytes
}

/// `renameat2(2)` flags (glibc declares the call only under `_GNU_SOURCE`).
let RENAME_NOREPLACE: UInt32 = 1
let RENAME_EXCHANGE: UInt32 = 2
let RENAME_WHITEOUT: UInt32 = 4

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`, looked up at run time; -1 with errno set on failure.
func renameat2(_ from: String, _ to: String, flags: UInt32) -> Int32 {
    typealias Function = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else {
        errno = ENOSYS
        return -1
    }
    let function = unsafeBitCast(symbol, to: Function.self)
    let atCurrentDirectory: Int32 = -100
    return function(atCurrentDirectory, from, atCurrentDirectory, to, flags)
}

/// `fallocate(2)` (glibc declares it only under `_GNU_SOURCE`); -1 with errno set on failure.
func fallocate(_ descriptor: Int32, _ mode: Int32, _ offset: off_t, _ length: off_t) -> Int32 {
    typealias Function = @convention(c) (Int32, Int32, off_t, off_t) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else {
        errno = ENOSYS
        return -1
    }
    return unsafeBitCast(symbol, to: Function.self)(descriptor, mode, offset, length)
}

/// Problems found by a background thread, and whether it finished.
final class ProblemLog: @unchecked Sendable {
    private let lock = NSLock()
    private var problems: [String] = []
    private var finished = false

    func add(_ problem: String) { lock.withLock { problems.append(problem) } }
    func finish() { lock.withLock { finished = true } }
    var all: [String] { lock.withLock { problems } }
    var count: Int { lock.withLock { problems.count } }
    var isFinished: Bool { lock.withLock { finished } }
}

/// `syncfs(2)` (glibc declares it only under `_GNU_SOURCE`); -1 with errno set on failure.
func syncfs(_ descriptor: Int32) -> Int32 {
    typealias Function = @convention(c) (Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syncfs") else {
        errno = ENOSYS
        return -1
    }
    return unsafeBitCast(symbol, to: Function.self)(descriptor)
}
