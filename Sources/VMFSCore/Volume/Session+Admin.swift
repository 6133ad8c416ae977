/// Administrative actions: breaking locks.
extension Session {
    /// See ``Volume/breakLock(_:force:)``.
    func breakLock(_ index: Int, force: Bool) throws(VMFSError) -> String {
        try checkWritable()
        guard index >= 0, index < Int(layout.lockCount) else {
            throw VMFSError(.invalidArgument, "lock index \(index) is outside 0..<\(layout.lockCount)")
        }
        let kind = LockManager.kind(ofLock: index, layout: layout)
        let me = LockManager.Me(identity: identity, slot: membership.slot, generation: membership.generation)
        var done: [String] = []
        // Watch long enough to tell a live holder from a dead one, unless forced.
        let watch = force ? 0 : UInt64(timing.deadIntervalMs + timing.renewIntervalMs)
        let deadline = Clock.monotonicNanoseconds + watch * 1_000_000
        while true {
            let (record, raw) = try locks.read(index, kind: kind)
            if record.mode == .free { break }
            var remaining: [LockRecord.Holder] = []
            var recoverSlot: Int?
            var alive: [LockRecord.Holder] = []
            for holder in record.holders {
                switch locks.status(of: holder, me: me) {
                case .stale: done.append("dropped stale holder \(holder.host) (slot \(holder.slot))")
                case .dead: recoverSlot = holder.slot
                case .me, .alive, .replaying:
                    alive.append(holder)
                    remaining.append(holder)
                }
            }
            if let recoverSlot {
                if try recovery.recover(slot: recoverSlot) != nil {
                    done.append("recovered dead host in slot \(recoverSlot) (journal replayed, its locks freed)")
                }
                continue
            }
            if !alive.isEmpty {
                if force {
                    done.append("forcibly removed live holder(s) " + alive.map { "\($0.host) (slot \($0.slot))" }.joined(separator: ", "))
                    remaining = []
                } else if Clock.monotonicNanoseconds < deadline {
                    try options.interruption.sleep(milliseconds: 50, while: "watching the holders of lock \(index)")
                    try heartbeat.refresh()
                    continue
                } else {
                    throw locks.busyError(objectName: "lock \(index)", record: record, holders: alive)
                }
            }
            var next = record
            next.removeHolders { holder in !remaining.contains(holder) }
            next.version &+= 1
            next.changedWallTime = Clock.wallNanoseconds
            let address = layout.lockRecord(index)
            if try locks.updater.compareAndWrite(at: address, expected: raw, new: next.encoded(volumeID: volumeID, address: address)) == .written {
                if remaining.isEmpty { break }
            }
        }
        if done.isEmpty {
            let recovered = recovery.completed.map { "slot \($0.slot)" }
            return "lock \(index) is free" + (recovered.isEmpty ? "" : " (its holder was recovered: \(recovered.joined(separator: ", ")))")
        }
        return done.joined(separator: "; ")
    }
}
