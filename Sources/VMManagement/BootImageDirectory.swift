import Glibc
import VMFSCore

/// A private directory (`mkdtemp`, mode 0700, under `$TMPDIR` or `/tmp`) that holds a VM's boot
/// images while the loader reads them, removed with its contents when the value goes away.
///
/// Images are streamed from the volume in 1 MiB pieces, never held in memory whole, and only
/// up to a bound: a `.vmx` that names a huge file as its kernel gets an error, not an attempt
/// to copy it.
final class BootImageDirectory {
    /// The directory.
    let path: String
    private var files: [String] = []

    init() throws(VMError) {
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/vmctl-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw VMError(.storage, "cannot create a private directory for boot images in \(base): \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { remove() }

    /// Deletes the images and the directory (again: nothing).
    func remove() {
        for file in files { unlink(file) }
        files.removeAll()
        rmdir(path)
    }

    /// Copies `name` from `volume` into the directory and returns its local path.
    ///
    /// - Parameter limit: The largest image accepted, in bytes.
    /// - Throws: ``VMError`` naming the image when it is larger than `limit` or cannot be copied.
    func extract(_ name: String, from volume: Volume, limit: UInt64) throws(VMError) -> String {
        let local = "\(path)/\(files.count)-\(String(name.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "_" }.prefix(100)))"
        func checkSize(_ size: UInt64) throws(VMError) {
            guard size <= limit else {
                throw VMError(.invalidArgument, "boot image '\(name)' is \(size) bytes; a boot image may be at most \(limit) bytes "
                              + "(\(VirtualMachineStore.maximumBootImageSize >> 20) MiB, and no more than the VM's memory)")
            }
        }
        // Sized before it is opened: the image may be a file this VM holds open already (a disk).
        if let status = try? volume.status(of: name) { try checkSize(status.size) }
        let handle: FileHandle
        do throws(VMFSError) {
            handle = try volume.open(name, access: .readOnly)
        } catch {
            throw VMError(error.code == .notFound ? .notFound : .storage, "boot image '\(name)': \(error.description)")
        }
        defer { try? handle.close() }
        try checkSize(handle.size)
        let fd = open(local, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VMError(.storage, "cannot create \(local): \(String(cString: strerror(errno)))") }
        files.append(local)
        defer { close(fd) }
        try copy(handle, name: name, to: fd, local: local)
        return local
    }

    private func copy(_ handle: FileHandle, name: String, to fd: Int32, local: String) throws(VMError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var position: UInt64 = 0
        let size = handle.size
        while position < size {
            let wanted = Int(min(UInt64(buffer.count), size - position))
            let count: Int
            do { count = try handle.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: position) } catch {
                throw VMError(.storage, "reading boot image '\(name)' at byte \(position): \(error.description)")
            }
            guard count > 0 else { break }
            var done = 0
            while done < count {
                let written = pwrite(fd, buffer.baseAddress! + done, count - done, off_t(position) + off_t(done))
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw VMError(.storage, "writing \(local): \(String(cString: strerror(errno)))") }
                done += written
            }
            position += UInt64(count)
        }
    }
}
