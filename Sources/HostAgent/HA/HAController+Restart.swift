internal import VMFSCore
internal import SystemSupport

extension HAController {
    /// Whether a VM's `.vmx` lock says it runs somewhere (or cannot be known yet).
    enum RunningState {
        case running
        /// Its holder is dead and not yet recovered: wait for the recovery to free the lock.
        case holderDead
        case nowhere
    }

    func runningState(of vm: HAConfiguration.VMSettings) -> RunningState {
        guard let datastore = datastores.first(where: { $0.name == vm.datastore }), let volume = try? datastore.volume(),
              let lock = try? volume.lockState(ofFile: "\(vm.name).vmx") else { return .running }
        if lock.isHeldElsewhere || lock.isHeldHere { return .running }
        if lock.holders.contains(where: { $0.liveness == .dead }) { return .holderDead }
        return .nowhere
    }

    /// Starts the protected (and evacuated) VMs that should run but run nowhere, those that the
    /// shared placement gives this member; after a grace period, any member tries.
    func restartVMsThatRunNowhere(_ configuration: HAConfiguration, members: [MemberView]) {
        let now = MonotonicClock.nanoseconds
        var candidates: [HAPlacement.Candidate] = []
        // VMs that should run and do not (yet): each priority waits for the ones above it.
        var outstanding: [String: HAConfiguration.Priority] = [:]
        for (uuid, vm) in configuration.vms where vm.wantsRestart {
            let pending = state.withLock { $0.starting[uuid] != nil }
            if pending {
                outstanding[uuid] = vm.priority
                continue
            }
            switch runningState(of: vm) {
            case .running:
                state.withLock { s in
                    s.downSince[uuid] = nil
                    s.retryAfter[uuid] = nil
                }
            case .holderDead:
                continue
            case .nowhere:
                let ready = state.withLock { s -> Bool in
                    if s.downSince[uuid] == nil { s.downSince[uuid] = now }
                    return (s.retryAfter[uuid] ?? 0) <= now
                }
                outstanding[uuid] = vm.priority
                if ready { candidates.append(HAPlacement.Candidate(uuid: uuid, name: vm.name, priority: vm.priority, memoryBytes: vm.memoryBytes)) }
            }
        }
        guard !candidates.isEmpty else { return }
        // Members that can take VMs: live, not in maintenance, with a recent status.
        let fresh = MonotonicClock.wallNanoseconds - 5_000_000_000
        let placeable = members.filter { member in
            guard member.isLive, let status = member.status, !status.maintenance else { return false }
            return member.name == hostName || status.updatedWallNanoseconds >= fresh
        }
        let pendingMemory = state.withLock { s in s.starting.keys.compactMap { configuration.vms[$0]?.memoryBytes }.reduce(0, +) }
        let free = placeable.map { member -> HAPlacement.Member in
            let status = member.status
            var available = (status?.capacityMemoryBytes ?? 0).subtractingClamped(status?.usedMemoryBytes ?? 0)
            if member.name == hostName { available = available.subtractingClamped(pendingMemory) }
            return HAPlacement.Member(name: member.name, freeMemoryBytes: available)
        }
        let (assignments, unplaced) = HAPlacement.plan(candidates, on: free)
        let canTakeOthers = free.first(where: { $0.name == hostName }) != nil
        // Priority waves: only the highest priority still outstanding starts now; a lower one
        // waits until those run. Members' views of each other's free memory can be a second
        // stale, so two members could otherwise each place a different VM in the last free room
        // and a low-priority VM could take it. A VM that fits nowhere holds nobody back.
        let unplacedSet = Set(unplaced)
        let wave = outstanding.filter { !unplacedSet.contains($0.key) }.values.min()
        for candidate in candidates where wave.map({ candidate.priority <= $0 }) ?? true {
            let assigned = assignments[candidate.uuid]
            let waited = now - (state.withLock { $0.downSince[candidate.uuid] } ?? now)
            if assigned == hostName || (assigned != nil && canTakeOthers && waited >= Self.restartGraceNanoseconds
                                        && (free.first { $0.name == hostName }?.freeMemoryBytes ?? 0) >= candidate.memoryBytes) {
                start(candidate.uuid, configuration.vms[candidate.uuid])
            }
        }
        for uuid in unplaced { reportUnplaced(uuid, configuration.vms[uuid], free: free) }
    }

    private func reportUnplaced(_ uuid: String, _ vm: HAConfiguration.VMSettings?, free: [HAPlacement.Member]) {
        guard let vm else { return }
        let now = MonotonicClock.nanoseconds
        let report = state.withLock { s -> Bool in
            s.retryAfter[uuid] = now + 1_000_000_000
            guard now - (s.reportedUnplaced[uuid] ?? 0) >= 30_000_000_000 else { return false }
            s.reportedUnplaced[uuid] = now
            return true
        }
        guard report else { return }
        let room = free.map { "\($0.name) \($0.freeMemoryBytes >> 20) MiB" }.joined(separator: ", ")
        context.events.record(HostEvent(kind: .haRestartFailed, severity: .error, vm: uuid, vmName: vm.name, volume: vm.datastore,
                                              message: "HA cannot restart VM '\(vm.name)': it needs \(vm.memoryBytes >> 20) MiB and no member "
                                                       + "has room (free: \(room.isEmpty ? "no member" : room)); retrying"))
    }

    /// Powers `uuid` on here in the background; on failure it is retried with backoff.
    private func start(_ uuid: String, _ settings: HAConfiguration.VMSettings?) {
        guard let settings else { return }
        let go = state.withLock { s -> Bool in
            guard s.starting[uuid] == nil else { return false }
            s.starting[uuid] = MonotonicClock.nanoseconds
            return true
        }
        guard go else { return }
        do {
            try NativeThread.detach(name: "hostd-ha-start") { [self] in
                let outcome: Result<ManagedVM, AgentError>
                do throws(AgentError) {
                    guard let agent else { throw AgentError(.invalidState, "the agent is stopping") }
                    let vm = try agent.ensureRegistered(uuid: uuid, name: settings.name, datastore: settings.datastore)
                    try vm.powerOn(progress: nil)
                    outcome = .success(vm)
                } catch {
                    outcome = .failure(error)
                }
                finished(uuid, settings, outcome)
            }
        } catch {
            state.withLock { _ = $0.starting.removeValue(forKey: uuid) }
        }
    }

    private func finished(_ uuid: String, _ settings: HAConfiguration.VMSettings, _ outcome: Result<ManagedVM, AgentError>) {
        let now = MonotonicClock.nanoseconds
        switch outcome {
        case .success(let vm):
            let failure = state.withLock { s -> FailureRecord? in
                s.starting[uuid] = nil
                s.downSince[uuid] = nil
                s.retryAfter[uuid] = nil
                return s.failures.values.filter { now - $0.detectedMonotonic < 60_000_000_000 }.max { $0.detected < $1.detected }
            }
            context.events.record(HostEvent(kind: .haRestarted, vm: uuid, vmName: settings.name, volume: settings.datastore,
                                                  message: "HA restarted VM '\(settings.name)' on \(hostName)"
                                                           + (failure.map { " after \($0.host) failed" } ?? "")))
            recordRestart(vm, settings: settings, failure: failure)
        case .failure(let error):
            let backoff = state.withLock { s -> UInt64 in
                s.starting[uuid] = nil
                let previous = s.retryAfter[uuid].map { $0 > now ? $0 - now : 0 } ?? 0
                let next = min(max(previous * 2, 200_000_000), 10_000_000_000)
                s.retryAfter[uuid] = now + next
                return next
            }
            // Busy: another member won the VM's lock — exactly what should happen.
            if error.code != .busy {
                context.events.record(HostEvent(kind: .haRestartFailed, severity: .warning, vm: uuid, vmName: settings.name,
                                                      volume: settings.datastore,
                                                      message: "HA could not restart VM '\(settings.name)' on \(hostName): \(error.message); "
                                                               + "retrying in \(backoff / 1_000_000) ms"))
            }
        }
    }

    /// Queues this restart (with its first guest instruction when known) for the failover's
    /// record; ``recordRestartsInBackground()`` writes it.
    private func recordRestart(_ vm: ManagedVM, settings: HAConfiguration.VMSettings, failure: FailureRecord?) {
        let poweredOn = MonotonicClock.wallNanoseconds
        // The first instruction arrives as a marker shortly after power-on; wait for it briefly.
        var first: Int64?
        for _ in 0..<100 {
            if let instruction = vm.detail.firstInstructionMonotonicNanoseconds {
                let (wall, monotonic) = (MonotonicClock.wallNanoseconds, MonotonicClock.nanoseconds)
                first = wall - Int64(monotonic.subtractingClamped(instruction))
                break
            }
            MonotonicClock.sleep(milliseconds: 10)
        }
        let restart = HAConfiguration.Failover.Restart(vm: vm.uuid, name: settings.name, host: hostName, poweredOn: poweredOn,
                                                      firstInstruction: first)
        state.withLock { $0.unrecordedRestarts.append(RestartRecord(restart: restart, failure: failure)) }
    }

    /// Writes the queued restarts to the cluster's configuration in one update, on a thread of
    /// its own (the update may wait for another member's). Restarts that could not be written
    /// stay queued for the next tick: tens of VMs restarting at once cost one update per batch,
    /// not one each, and none is dropped when the configuration is busy.
    func recordRestartsInBackground() {
        let batch = state.withLock { s -> [RestartRecord] in
            guard !s.recordingRestarts, !s.unrecordedRestarts.isEmpty else { return [] }
            s.recordingRestarts = true
            return s.unrecordedRestarts
        }
        guard !batch.isEmpty else { return }
        do {
            try NativeThread.detach(name: "hostd-ha-record") { [self] in
                var written = true
                do {
                    try updateConfiguration { (configuration) throws(AgentError) in
                        guard configuration != nil else { return }
                        for record in batch { Self.apply(record, to: &configuration) }
                    }
                } catch {
                    written = false
                }
                state.withLock { s in
                    if written { s.unrecordedRestarts.removeFirst(min(batch.count, s.unrecordedRestarts.count)) }
                    s.recordingRestarts = false
                }
            }
        } catch {
            state.withLock { $0.recordingRestarts = false }
        }
    }

    /// Adds one restart to its failover's record (creating the record when this member's is the
    /// first), and ends the VM's evacuation.
    private static func apply(_ record: RestartRecord, to configuration: inout HAConfiguration?) {
        let restart = record.restart
        configuration?.vms[restart.vm]?.evacuatingFrom = nil
        guard let failure = record.failure else { return }
        if let index = configuration?.failovers.firstIndex(where: { $0.failedHost == failure.host && abs($0.detected - failure.detected) < 30_000_000_000 }) {
            guard configuration?.failovers[index].restarts.contains(where: { $0.vm == restart.vm && $0.poweredOn == restart.poweredOn }) == false else { return }
            configuration?.failovers[index].restarts.append(restart)
            if configuration?.failovers[index].recovered == nil { configuration?.failovers[index].recovered = failure.recovered }
        } else {
            configuration?.failovers.append(HAConfiguration.Failover(failedHost: failure.host, failed: failure.failed, detected: failure.detected,
                                                                     recovered: failure.recovered, restarts: [restart]))
        }
    }
}

extension UInt64 {
    /// `self - other`, or 0 when `other` is larger.
    func subtractingClamped(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}
