internal import VMFSCore
internal import VMManagement
internal import SystemSupport
internal import CVMFSLinux
#if canImport(Glibc)
internal import Glibc
#endif

/// A VM's boot images copied from the volume into memfds, which the VMM maps (`/proc/self/fd/N`):
/// the VMM never reads the volume itself.
struct BootImages: Sendable {
    /// Largest boot image accepted (a kernel, an initrd or a test guest).
    static let maximumBytes: UInt64 = 512 << 20

    /// Kernel or guest image first, then the initrd if any.
    let descriptors: [OwnedDescriptor]

    static func load(definition: VirtualMachineDefinition, volume: Volume, client: FileClient) throws(AgentError) -> BootImages {
        var descriptors: [OwnedDescriptor] = []
        for file in definition.bootFiles {
            descriptors.append(try copy(file, volume: volume, client: client))
        }
        return BootImages(descriptors: descriptors)
    }

    private static func copy(_ file: String, volume: Volume, client: FileClient) throws(AgentError) -> OwnedDescriptor {
        let handle: FileHandle
        do { handle = try volume.open(file, access: .readOnly, client: client) } catch {
            throw AgentError(error.code == .notFound ? .notFound : .storageUnavailable, "boot image '\(file)': \(error.message)")
        }
        defer { try? handle.close() }
        guard handle.size <= maximumBytes else {
            throw AgentError(.invalidArgument, "boot image '\(file)' is \(handle.size) bytes; at most \(maximumBytes) are accepted")
        }
        let fd = cvmfs_memfd_create("boot-\(file)", 0)
        guard fd >= 0 else { throw AgentError(.failed, "memfd_create for boot image '\(file)': errno \(-fd)") }
        let descriptor = OwnedDescriptor(fd)
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        guard let base = buffer.baseAddress else { throw AgentError(.failed, "cannot allocate a copy buffer") }
        var offset: UInt64 = 0
        while offset < handle.size {
            let count: Int
            do { count = try handle.read(into: buffer, at: offset) } catch {
                throw AgentError(.storageUnavailable, "reading boot image '\(file)' at \(offset): \(error.message)")
            }
            if count == 0 { break }
            var written = 0
            while written < count {
                let n = pwrite(fd, base + written, count - written, off_t(offset) + off_t(written))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw AgentError(.failed, "writing boot image '\(file)' to memory: errno \(errno)")
                }
                written += n
            }
            offset += UInt64(count)
        }
        return descriptor
    }
}
