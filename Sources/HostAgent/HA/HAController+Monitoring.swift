internal import VMFSCore
internal import SystemSupport

extension HAController {
    /// VM monitoring: a monitored VM whose guest sent tools heartbeats and then went silent for
    /// the timeout is reset, at most `maxResetsPerHour` times an hour. A guest that never sent one
    /// (no tools) is left alone.
    func monitorGuests(_ configuration: HAConfiguration) {
        let now = MonotonicClock.nanoseconds
        let timeout = UInt64(configuration.settings.monitoringTimeoutSeconds) * 1_000_000_000
        for vm in (agent?.managedVMs ?? []) where vm.power == .running {
            guard let settings = configuration.vms[vm.uuid], settings.monitoring else { continue }
            let (count, last) = vm.guestHeartbeats
            guard count > 0, let last else { continue }
            let resetAt = state.withLock { $0.resetAt[vm.uuid] } ?? 0
            // After a reset the guest boots again; its silence counts from the reset.
            let silentSince = max(last, resetAt)
            guard now - silentSince >= timeout else { continue }
            let allowed = state.withLock { s -> Bool in
                let recent = (s.resets[vm.uuid] ?? []).filter { now - $0 < 3_600_000_000_000 }
                s.resets[vm.uuid] = recent
                guard recent.count < configuration.settings.maxResetsPerHour else { return false }
                s.resets[vm.uuid] = recent + [now]
                s.resetAt[vm.uuid] = now
                return true
            }
            guard allowed else { continue }
            do {
                try vm.reset()
                context.events.record(HostEvent(kind: .vmMonitoringReset, severity: .warning, vm: vm.uuid, vmName: vm.name,
                                                      volume: vm.datastore.name,
                                                      message: "VM monitoring reset VM '\(vm.name)': no guest heartbeat for "
                                                               + "\((now - silentSince) / 1_000_000_000) s"))
            } catch {
                context.events.record(HostEvent(kind: .vmMonitoringReset, severity: .error, vm: vm.uuid, vmName: vm.name,
                                                      volume: vm.datastore.name, message: "VM monitoring could not reset VM '\(vm.name)': \(error.message)"))
            }
        }
    }

    /// Isolation: this host is alive but cannot write to the cluster's volumes (its write
    /// deadline passed, so its VMs' leases ran out and they are paused). With `powerOff`, it powers
    /// them off itself after a second: the survivors will restart them.
    func handleIsolation(_ configuration: HAConfiguration) {
        let now = MonotonicClock.nanoseconds
        let isolated = volumes.contains { (_, volume) in (volume.writeDeadline ?? 0) < now } || volumes.isEmpty
        let since = state.withLock { s -> UInt64? in
            if !isolated { s.isolatedSince = nil; return nil }
            if s.isolatedSince == nil { s.isolatedSince = now }
            return s.isolatedSince
        }
        guard let since, now - since >= 1_000_000_000, configuration.settings.isolationResponse == .powerOff else { return }
        for vm in (agent?.managedVMs ?? []) where vm.power.isActive && configuration.vms[vm.uuid]?.protected == true {
            vm.isolated(reason: "this host cannot reach the cluster's volume: HA's isolation response powers the VM off")
            context.events.record(HostEvent(kind: .haIsolated, severity: .error, vm: vm.uuid, vmName: vm.name, volume: vm.datastore.name,
                                                  message: "host \(hostName) is isolated from its volume: VM '\(vm.name)' powered off "
                                                           + "(the survivors restart it)"))
        }
    }
}
