import ArgumentParser
import Foundation
import VMFSCore
import VMFSToolSupport

/// Copies a local file onto the volume (import), skipping runs of zeros so the copy stays sparse.
struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy a local file onto the volume.")

    @OptionGroup var host: HostIdentityOptions
    @Flag(help: "Preallocate the whole file (thick, lazily zeroed) instead of thin.") var thick = false
    @Flag(help: "Replace NAME if it exists.") var force = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Local file to copy.") var local: String
    @Argument(help: "Name on the volume.") var name: String

    func run() throws {
        do {
            let source = open(local, O_RDONLY | O_CLOEXEC)
            guard source >= 0 else { throw ValidationError("cannot open \(local): \(String(cString: strerror(errno)))") }
            defer { close(source) }
            var info = stat()
            fstat(source, &info)
            let size = UInt64(info.st_size)
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            if force, (try? volume.status(of: name)) != nil { try volume.remove(name) }
            let handle = try volume.create(name, attributes: CreateAttributes(mode: UInt32(info.st_mode) & 0o7777, uid: info.st_uid, gid: info.st_gid),
                                           access: .readWrite)
            if thick && size > 0 { try handle.allocate(offset: 0, length: size) }
            let chunk = 1 << 20
            var buffer = [UInt8](repeating: 0, count: chunk)
            var offset: UInt64 = 0
            while offset < size {
                let n = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress, chunk, off_t(offset)) }
                guard n > 0 else { throw ValidationError("reading \(local) failed at \(offset): \(String(cString: strerror(errno)))") }
                let piece = Array(buffer[0..<n])
                if piece.contains(where: { $0 != 0 }) { try handle.write(bytes: piece, at: offset) }
                offset += UInt64(n)
            }
            if handle.size != size { try handle.truncate(to: size) }
            try handle.sync()
            try handle.close()
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs put", error)
        }
    }
}

/// Copies a file from the volume to a local file (export), leaving holes sparse.
struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy a file from the volume to a local file.")

    @OptionGroup var host: HostIdentityOptions
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Name on the volume.") var name: String
    @Argument(help: "Local file to write.") var local: String

    func run() throws {
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions(readOnly: true))
            defer { try? volume.unmount() }
            let handle = try volume.open(name, access: .readOnly)
            let target = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard target >= 0 else { throw ValidationError("cannot create \(local): \(String(cString: strerror(errno)))") }
            defer { close(target) }
            let size = handle.size
            let chunk = 1 << 20
            var offset: UInt64 = 0
            while offset < size {
                let piece = try handle.read(count: chunk, at: offset)
                if piece.isEmpty { break }
                if piece.contains(where: { $0 != 0 }) {
                    let written = piece.withUnsafeBytes { pwrite(target, $0.baseAddress, piece.count, off_t(offset)) }
                    guard written == piece.count else { throw ValidationError("writing \(local) failed: \(String(cString: strerror(errno)))") }
                }
                offset += UInt64(piece.count)
            }
            guard ftruncate(target, off_t(size)) == 0 else { throw ValidationError("sizing \(local) failed: \(String(cString: strerror(errno)))") }
            try handle.close()
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs get", error)
        }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a file (fails while another host has it open).")

    @OptionGroup var host: HostIdentityOptions
    @Argument(help: "Block device or image file.") var device: String
    @Argument(help: "Names to remove.") var names: [String]

    func run() throws {
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            for name in names { try volume.remove(name) }
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs rm", error)
        }
    }
}

struct Move: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mv", abstract: "Rename a file atomically.")

    @OptionGroup var host: HostIdentityOptions
    @Flag(name: .customLong("no-replace"), help: "Fail if TARGET exists.") var noReplace = false
    @Flag(help: "Swap SOURCE and TARGET.") var exchange = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument var source: String
    @Argument var target: String

    func run() throws {
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            try volume.rename(source, to: target, mode: exchange ? .exchange : (noReplace ? .noReplace : .replace))
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs mv", error)
        }
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a file of a given size, thin (sparse) or thick.")

    @OptionGroup var host: HostIdentityOptions
    @Option(help: "Size, e.g. 20G.") var size: String = "0"
    @Flag(help: "Preallocate (lazily zeroed thick).") var thick = false
    @Flag(name: .customLong("eager-zero"), help: "Preallocate and zero now (eager-zeroed thick; needed for multi-writer).")
    var eagerZero = false
    @Argument(help: "Block device or image file.") var device: String
    @Argument var name: String

    func run() throws {
        guard let bytes = parseSize(size) else { throw ValidationError("--size '\(size)' is not a size") }
        do {
            let volume = try Volume.mount(path: device, options: host.mountOptions())
            defer { try? volume.unmount() }
            let handle = try volume.create(name, access: .readWrite)
            if bytes > 0 {
                if thick || eagerZero { try handle.allocate(offset: 0, length: bytes, eagerZero: eagerZero) } else { try handle.truncate(to: bytes) }
            }
            try handle.close()
            try volume.unmount()
        } catch {
            throw ToolOutput.failure("vmfs create", error)
        }
    }
}
