#if canImport(Glibc)
internal import Glibc
#endif

/// A read-only, private mapping of a whole file (kernel, initrd, guest image).
final class MappedFile {
    let path: String
    let bytes: UnsafeRawBufferPointer

    /// Maps `path`; `role` ("kernel", "initrd" …) names it in errors.
    init(path: String, role: String) throws(HypervisorError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw HypervisorError(.invalidConfiguration, "cannot open \(role) \(path)", errno: errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .systemCall("stat \(role) \(path)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw HypervisorError(.invalidConfiguration, "\(role) \(path) is not a regular file")
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw HypervisorError(.invalidImage, "\(path): \(role) file is empty (0 bytes)") }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw .systemCall("mmap \(role) \(path)")
        }
        self.path = path
        self.bytes = UnsafeRawBufferPointer(start: mapping, count: size)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count) }
}
