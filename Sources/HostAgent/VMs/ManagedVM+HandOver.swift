internal import SystemSupport

extension ManagedVM {
    /// Stops serving the VM's disk channels while its VMM keeps running, as this agent's exit
    /// would: the VMM sees the channels close, keeps the requests in flight and sends them again
    /// on the channels of the agent that adopts it. Called before the volume is handed over, after
    /// which this agent may not write to it.
    func stopServingDisks() {
        let disks = state.withLock { $0.runtime?.disks ?? [] }
        for disk in disks { disk.stop() }
    }
}
