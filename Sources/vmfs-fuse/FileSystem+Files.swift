internal import CFuse
internal import VMFSCore
import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// OPEN, FLUSH, RELEASE and FSYNC: the life of an open file and its cluster lock.
///
/// Opening for writing takes the file's exclusive on-disk lock (another host gets `EBUSY`,
/// logged with the owner); read-only opens share the lock with other readers. The last
/// RELEASE of this host commits the file's metadata and drops the lock.
extension FileSystem {
    func open(_ request: Request, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("open") { () throws(VMFSError) in
            guard let info else { throw VMFSError(.invalidArgument, "open without file info") }
            let open: (handle: OpenHandle, keepCache: Bool)
            do throws(VMFSError) {
                let (slot, generation) = try inodes.file(inode)
                open = try openFile(inode: inode, slot: slot, generation: generation, flags: info.pointee.flags, caller: request.caller.pid)
            } catch where error.code == .notFound || (error.code == .staleHandle && error.location?.structure != Request.expectedStructure) {
                // The file the kernel looked up was removed (or is being removed, or its slot
                // was reused) before this OPEN. Not ENOENT: that would be wrong for O_CREAT,
                // which OPEN does not show. ESTALE makes the kernel look the name up again and
                // retry once (or create the file), and the retry's lookup locks the file the
                // name names by then, so that it cannot change again before the OPEN.
                try expectRetry(caller: request.caller.pid, writable: info.pointee.flags & O_ACCMODE != O_RDONLY)
                throw VMFSError(.staleHandle, "the file was removed after the kernel looked it up: \(error.message)",
                                location: .init(structure: Request.expectedStructure))
            }
            try finishOpen(request, open.handle, info: info, keepCache: open.keepCache, create: false)
        }
    }

    /// Opens the file in `slot` for `flags`, truncating it for `O_TRUNC`.
    ///
    /// `keepCache` is true when this host already had the file open, so its lock was held
    /// without a gap and the kernel's cached pages of the file cannot be stale.
    ///
    /// - Throws: `staleHandle` when the kernel's inode `inode` no longer matches the file
    ///   (another host changed it after the lookup, see ``InodeTable``): the kernel then looks
    ///   the name up again and opens the new inode.
    func openFile(inode: fuse_ino_t, slot: Int, generation: UInt32, flags: Int32,
                  caller: Int32) throws(VMFSError) -> (handle: OpenHandle, keepCache: Bool) {
        let writable = flags & O_ACCMODE != O_RDONLY
        if writable && configuration.readOnly { throw VMFSError(.readOnly, "the volume is mounted read-only") }
        return try slots.withOpenCloseLock(slot) { () throws(VMFSError) -> (OpenHandle, Bool) in
            let lockWasHeld = slots.counts(slot).handles > 0
            let told = inodes.told(slot: slot)
            let handle = try volume.open(slot: slot, generation: generation, access: writable ? .readWrite : .readOnly)
            // Counted from here on, so no lookup hands out another instance meanwhile. Such a
            // lookup takes the file for held and records its current attributes as the kernel's,
            // so the check below compares with what the kernel was told before.
            slots.opened(slot, writable: writable)
            let current = inodes.isCurrent(inode)
            let unchanged = inodes.matches(handle.heldStatus, told: told)
            if !current || (!lockWasHeld && !unchanged) {
                if lockWasHeld {
                    // Another handle keeps the lock and the current instance is right: the
                    // kernel just used an old inode. Its retry finds the current one.
                    slots.closed(slot, writable: writable)
                    try? handle.close()
                } else {
                    if !unchanged { inodes.renew(handle.heldStatus) }
                    if let replaced = graces.keep(handle, slot: slot, writable: writable) {
                        slots.closed(slot, writable: replaced.writable)
                        try? replaced.handle.close()
                    }
                }
                try expectRetry(caller: caller, writable: writable)
                throw VMFSError(.staleHandle, "file slot \(slot) changed on another host since the kernel looked it up; "
                                + "the kernel looks it up again", location: .init(structure: Request.expectedStructure))
            }
            do throws(VMFSError) {
                if writable && flags & O_TRUNC != 0 && handle.size != 0 { try handle.truncate(to: 0) }
            } catch {
                slots.closed(slot, writable: writable)
                try? handle.close()
                throw error
            }
            graces.retryDone(pid: caller)
            // A handle kept for a refused OPEN is taken over by this one.
            if let kept = graces.take(slot: slot) {
                slots.closed(slot, writable: kept.writable)
                try? kept.handle.close()
            }
            return (OpenHandle(handle: handle, inode: inode, writable: writable), lockWasHeld)
        }
    }

    /// Before an OPEN is refused as stale: the kernel retries it once from the same process,
    /// after a lookup that locks what the name names by then (``lookup``). When this refusal is
    /// of the retry itself (another host changed or removed that file before the lookup could
    /// lock it), answers `EBUSY` instead: a second `ESTALE` would reach the caller, while a file
    /// busy on another host is an answer it knows.
    func expectRetry(caller: Int32, writable: Bool) throws(VMFSError) {
        guard graces.expectRetry(pid: caller, writable: writable) else {
            throw VMFSError(.busy, "the file kept changing on another host while the kernel retried an open")
        }
    }

    /// Hands `open` to the kernel as `info->fh` and answers OPEN or CREATE. If the kernel no
    /// longer waits for the answer (the caller was interrupted), no RELEASE will come: close now.
    func finishOpen(_ request: Request, _ open: OpenHandle, info: UnsafeMutablePointer<fuse_file_info>, keepCache: Bool,
                    create: Bool) throws(VMFSError) {
        let entry = create ? entry(for: open.handle.heldStatus) : nil
        files.add(open)
        info.pointee.fh = open.retainForKernel()
        info.pointee.keep_cache = keepCache ? 1 : 0
        info.pointee.direct_io = 0
        let status = if let entry { fuse_reply_create(request.raw, [entry], info) } else { fuse_reply_open(request.raw, info) }
        if status != 0 {
            Log.debug("open of inode \(open.inode) was abandoned by the kernel (\(status)); closing it")
            _ = OpenHandle.released(info.pointee.fh)
            files.remove(open)
            closeHandle(open)
        }
    }

    func flush(_ request: Request, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("flush") { () throws(VMFSError) in
            let open = try openHandle(info)
            // close(2) returns before the kernel sends RELEASE: make what was written visible
            // to other hosts (and durable) now, not when the lock is dropped a moment later.
            if open.writable && open.dirty.exchange(false, ordering: .acquiringAndReleasing) {
                try open.handle.sync()
            }
            request.reply(error: 0)
        }
    }

    func release(_ request: Request, info: UnsafeMutablePointer<fuse_file_info>?) {
        guard let info, let open = OpenHandle.released(info.pointee.fh) else {
            request.reply(error: EBADF)
            return
        }
        files.remove(open)
        closeHandle(open)
        request.reply(error: 0)
    }

    /// Closes one handle: the last one of this host commits and drops the file's lock, and the
    /// kernel forgets the file's attributes first.
    func closeHandle(_ open: OpenHandle) {
        slots.withOpenCloseLock(open.slot) {
            close(open.handle, slot: open.slot, inode: open.inode, writable: open.writable)
        }
    }

    /// Closes `handle` of `slot` (the slot's open/close lock held).
    func close(_ handle: FileHandle, slot: Int, inode: fuse_ino_t?, writable: Bool) {
        let left = slots.closed(slot, writable: writable)
        if left.handles == 0 {
            // The kernel wrote back all it cached before RELEASE: its inode now has exactly the
            // attributes this host leaves on the volume.
            inodes.settle(handle.heldStatus)
            if let inode, configuration.lockedAttributeTimeout > 0 { invalidateAttributes(of: inode) }
        }
        do throws(VMFSError) {
            try handle.close()
        } catch {
            Log.error("closing file slot \(slot): \(error.description)")
        }
    }

    /// Closes kept handles of refused OPENs that no retry took over (run periodically).
    func closeExpiredGraceHandles() {
        for slot in graces.expiredSlots() {
            slots.withOpenCloseLock(slot) {
                guard let kept = graces.takeExpired(slot: slot) else { return }
                close(kept.handle, slot: slot, inode: nil, writable: kept.writable)
            }
        }
    }

    func fsync(_ request: Request, info: UnsafeMutablePointer<fuse_file_info>?) {
        request.answer("fsync") { () throws(VMFSError) in
            let open = try openHandle(info)
            open.dirty.store(false, ordering: .releasing)
            try open.handle.sync()
            request.reply(error: 0)
        }
    }
}
