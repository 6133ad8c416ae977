internal import CFuse
#if canImport(Glibc)
internal import Glibc
#endif

/// The libfuse low-level operation table: C function pointers that find the ``FileSystem``
/// through the session's user data and hand the request to it.
///
/// The closures capture nothing (a C function pointer cannot carry context). Operations left
/// out are answered `ENOSYS` by libfuse, which the kernel remembers: extended attributes
/// (`EOPNOTSUPP` to callers), and POSIX and BSD locks (then kept by the kernel, per host).
/// `copy_file_range` only checks the size limit (the kernel then copies through READ and WRITE).
enum Operations {
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, connection in
            guard let userdata, let connection else { return }
            Unmanaged<FileSystem>.fromOpaque(userdata).takeUnretainedValue().initialize(connection)
        }
        ops.lookup = { req, parent, name in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.lookup(request, parent: parent, name: name)
        }
        ops.forget = { req, _, _ in
            // Inode numbers are file slots: there is nothing to free when the kernel forgets one.
            if let req { fuse_reply_none(req) }
        }
        ops.forget_multi = { req, _, _ in
            if let req { fuse_reply_none(req) }
        }
        ops.getattr = { req, inode, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.getattr(request, inode: inode, info: info)
        }
        ops.setattr = { req, inode, attributes, toSet, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.setattr(request, inode: inode, attributes: attributes, toSet: toSet, info: info)
        }
        ops.create = { req, parent, name, mode, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.create(request, parent: parent, name: name, mode: mode, info: info)
        }
        ops.unlink = { req, parent, name in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.unlink(request, parent: parent, name: name)
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.rename(request, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        }
        ops.open = { req, inode, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.open(request, inode: inode, info: info)
        }
        ops.read = { req, _, size, offset, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.read(request, size: size, offset: offset, info: info)
        }
        ops.write = { req, _, data, size, offset, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.write(request, data: data, size: size, offset: offset, info: info)
        }
        ops.flush = { req, _, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.flush(request, info: info)
        }
        ops.release = { req, _, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.release(request, info: info)
        }
        ops.fsync = { req, _, _, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.fsync(request, info: info)
        }
        ops.fallocate = { req, _, mode, offset, length, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.fallocate(request, mode: mode, offset: offset, length: length, info: info)
        }
        ops.copy_file_range = { req, _, offsetIn, infoIn, _, offsetOut, infoOut, length, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.copyFileRange(request, offsetIn: offsetIn, infoIn: infoIn, offsetOut: offsetOut,
                                             infoOut: infoOut, length: length)
        }
        ops.lseek = { req, _, offset, whence, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.lseek(request, offset: offset, whence: whence, info: info)
        }
        ops.statfs = { req, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.statfs(request)
        }
        ops.opendir = { req, inode, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.opendir(request, inode: inode, info: info)
        }
        ops.readdir = { req, _, size, offset, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.readdir(request, size: size, offset: offset, info: info, plus: false)
        }
        ops.readdirplus = { req, _, size, offset, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.readdir(request, size: size, offset: offset, info: info, plus: true)
        }
        ops.releasedir = { req, _, info in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.releasedir(request, info: info)
        }
        ops.fsyncdir = { req, _, _, _ in
            // Namespace changes are committed before they are answered: nothing is pending.
            if let req { fuse_reply_err(req, 0) }
        }
        ops.mkdir = { req, _, _, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.refuse(request, "mkdir", "a directory")
        }
        ops.mknod = { req, _, _, _, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.refuse(request, "mknod", "a special file")
        }
        ops.symlink = { req, _, _, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.refuse(request, "symlink", "a symbolic link")
        }
        ops.link = { req, _, _, _ in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.refuse(request, "link", "a hard link")
        }
        ops.rmdir = { req, parent, name in
            guard let req else { return }
            let request = Request(raw: req)
            request.fileSystem.rmdir(request, parent: parent, name: name)
        }
        return ops
    }
}
