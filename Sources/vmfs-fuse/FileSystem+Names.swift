internal import CFuse
internal import VMFSCore
#if canImport(Glibc)
internal import Glibc
#endif

/// LOOKUP, CREATE, UNLINK and RENAME: the flat namespace. Every change is committed to the
/// volume before it is answered, so other hosts see it at once.
extension FileSystem {
    func lookup(_ request: Request, parent: fuse_ino_t, name raw: UnsafePointer<CChar>?) {
        request.answer("lookup") { () throws(VMFSError) in
            try Self.requireRoot(parent)
            let name = try Self.name(raw)
            let pid = request.caller.pid
            writeBacks.lookedUp(by: pid)
            // A retry's revalidation may find no file, and the lookup that follows a file
            // created meanwhile: the pending retry stays for that one.
            let file = try volume.status(of: name)
            if let writable = graces.retryLookup(pid: pid) {
                request.reply(entry: retryEntry(for: file, writable: writable))
                return
            }
            request.reply(entry: entry(for: file))
        }
    }

    /// The lookup of a process whose OPEN this daemon refused as stale (another host had
    /// changed or removed the file), which the kernel retries: the file the name names now is
    /// opened for the access the OPEN wanted and kept (``GraceHandles``), so that no host can
    /// change it before the retried OPEN arrives, and the kernel gets an inode with its current
    /// attributes. Without this, a second change between the retry's lookup and its OPEN would
    /// reach the caller as ESTALE. If the file cannot be opened (another host has it), the
    /// retried OPEN meets the same and answers EBUSY.
    private func retryEntry(for file: FileStatus, writable: Bool) -> fuse_entry_param {
        slots.withOpenCloseLock(file.slot) {
            let held = slots.counts(file.slot).handles > 0
            guard let handle = try? volume.open(slot: file.slot, generation: file.generation, access: writable ? .readWrite : .readOnly) else {
                return
            }
            slots.opened(file.slot, writable: writable)
            // Not held here before: another host may have changed the file since the kernel's
            // inode was made (even with the same size and times: mtime is stored at most once a
            // second), so the kernel gets a fresh inode, with no page cache to keep.
            if !held { inodes.renew(handle.heldStatus) }
            if let replaced = graces.keep(handle, slot: file.slot, writable: writable) {
                slots.closed(file.slot, writable: replaced.writable)
                try? replaced.handle.close()
            }
        }
        let current = slots.counts(file.slot).handles > 0 ? (try? volume.status(slot: file.slot, generation: file.generation)) : nil
        return entry(for: current ?? file)
    }

    /// How often CREATE tries again when the name it found taken was gone when it looked.
    static let createAttempts = 16

    func create(_ request: Request, parent: fuse_ino_t, name raw: UnsafePointer<CChar>?, mode: mode_t,
                info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("create") { () throws(VMFSError) in
            try Self.requireRoot(parent)
            let name = try Self.name(raw)
            guard let info else { throw VMFSError(.invalidArgument, "create without file info") }
            let flags = info.pointee.flags
            let writable = flags & O_ACCMODE != O_RDONLY
            if configuration.readOnly { throw VMFSError(.readOnly, "the volume is mounted read-only") }
            let caller = request.caller
            let attributes = CreateAttributes(mode: UInt32(mode) & 0o7777, uid: caller.uid, gid: caller.gid)
            var created: FileHandle?
            // Without O_EXCL the name may be created, removed and renamed by others between our
            // attempts: create it, or open what it names, until one of them holds still.
            for attempt in 1...Self.createAttempts where created == nil {
                do throws(VMFSError) {
                    created = try volume.create(name, attributes: attributes, access: writable ? .readWrite : .readOnly)
                } catch where error.code == .alreadyExists && flags & O_EXCL == 0 {
                    // Another process or host created it after the kernel looked the name up: open that file.
                    let existing: FileStatus
                    do throws(VMFSError) {
                        existing = try volume.status(of: name)
                    } catch where error.code == .notFound {
                        // ... and it was removed or renamed away again before we could look: create it.
                        guard attempt < Self.createAttempts else {
                            throw VMFSError(.busy, "'\(name)' kept appearing and disappearing while it was being created")
                        }
                        continue
                    }
                    let node = entry(for: existing).ino
                    let open: (handle: OpenHandle, keepCache: Bool)
                    do throws(VMFSError) {
                        open = try openFile(inode: node, slot: existing.slot, generation: existing.generation, flags: flags,
                                            caller: caller.pid)
                    } catch where attempt < Self.createAttempts
                                && (error.code == .notFound || (error.code == .staleHandle && error.location?.structure != Request.expectedStructure)) {
                        continue   // removed or replaced between the look and the open: start over
                    }
                    try finishOpen(request, open.handle, info: info, keepCache: open.keepCache, create: true)
                    return
                }
            }
            guard let handle = created else { throw VMFSError(.busy, "'\(name)' could not be created") }
            let open = slots.withOpenCloseLock(handle.slot) { () -> OpenHandle in
                slots.opened(handle.slot, writable: writable)
                return OpenHandle(handle: handle, inode: inodes.node(for: handle.heldStatus, held: true), writable: writable)
            }
            try finishOpen(request, open, info: info, keepCache: false, create: true)
        }
    }

    func unlink(_ request: Request, parent: fuse_ino_t, name raw: UnsafePointer<CChar>?) {
        request.answer("unlink") { () throws(VMFSError) in
            try Self.requireRoot(parent)
            try volume.remove(try Self.name(raw))
            writeBacks.renamedOrUnlinked(by: request.caller.pid)
            request.reply(error: 0)
        }
    }

    func rename(_ request: Request, parent: fuse_ino_t, name raw: UnsafePointer<CChar>?, newParent: fuse_ino_t,
                newName rawNew: UnsafePointer<CChar>?, flags: UInt32) {
        request.answer("rename") { () throws(VMFSError) in
            try Self.requireRoot(parent)
            try Self.requireRoot(newParent)
            let mode: RenameMode
            switch flags {
            case 0: mode = .replace
            case LinuxConstants.renameNoReplace: mode = .noReplace
            case LinuxConstants.renameExchange: mode = .exchange
            default:
                throw VMFSError(.invalidArgument, "rename flags 0x\(String(flags, radix: 16)) are not supported "
                                + "(only RENAME_NOREPLACE and RENAME_EXCHANGE)")
            }
            try volume.rename(try Self.name(raw), to: try Self.name(rawNew), mode: mode)
            writeBacks.renamedOrUnlinked(by: request.caller.pid)
            request.reply(error: 0)
        }
    }

    func statfs(_ request: Request) {
        request.answer("statfs") { () throws(VMFSError) in
            request.reply(statfs: Attributes.statfs(try volume.statistics(), readOnly: configuration.readOnly))
        }
    }
}
