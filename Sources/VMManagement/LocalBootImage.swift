import Glibc
import VMFSCore

/// A kernel, initrd or test guest on this host that `vmctl create` copies onto the volume:
/// a regular file no larger than ``VirtualMachineStore/maximumBootImageSize`` and the VM's
/// memory, opened without blocking (a FIFO cannot hang the command) and copied in pieces.
final class LocalBootImage {
    let path: String
    private let descriptor: Int32
    private let limit: UInt64

    init(path: String, memoryBytes: UInt64) throws(VMError) {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw VMError(.invalidArgument, "boot image \(path) cannot be read: \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw VMError(.invalidArgument, "boot image \(path) is not a regular file")
        }
        limit = min(VirtualMachineStore.maximumBootImageSize, memoryBytes)
        guard UInt64(info.st_size) <= limit else {
            close(fd)
            throw VMError(.invalidArgument, "boot image \(path) is \(info.st_size) bytes; a boot image may be at most \(limit) bytes "
                          + "(\(VirtualMachineStore.maximumBootImageSize >> 20) MiB, and no more than the VM's memory)")
        }
        descriptor = fd
        self.path = path
    }

    deinit { close(descriptor) }

    /// Copies the file to `handle` from its start, to its end.
    func copy(to handle: FileHandle) throws(VMFSError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var position: UInt64 = 0
        while true {
            let count = pread(descriptor, buffer.baseAddress, buffer.count, off_t(position))
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw VMFSError(.io, "reading boot image \(path) at byte \(position): \(String(cString: strerror(errno)))") }
            if count == 0 { return }
            position += UInt64(count)
            guard position <= limit else { throw VMFSError(.fileTooLarge, "boot image \(path) grew past \(limit) bytes while it was copied") }
            try handle.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: position - UInt64(count))
        }
    }
}
