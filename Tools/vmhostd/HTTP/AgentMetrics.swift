import HostAgent
import Prometheus

/// The agent's Prometheus metrics: gauges set from the agent's state at every scrape, plus the
/// HTTP request metrics Hummingbird records through swift-metrics into the same registry.
final class AgentMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    /// Updates the gauges from `agent` and renders the registry in the text format.
    func render(_ agent: HostAgent) -> String {
        let host = agent.hostStatistics
        registry.makeGauge(name: "vmhostd_host_memory_available_bytes", labels: [], help: "MemAvailable of the host").set(to: Double(host.memoryAvailableBytes))
        registry.makeGauge(name: "vmhostd_host_cpu_busy_seconds", labels: [], help: "CPU seconds the host spent busy since boot").set(to: host.cpuBusySeconds)
        registry.makeGauge(name: "vmhostd_agent_resident_bytes", labels: [], help: "Resident memory of vmhostd").set(to: Double(host.agentResidentBytes))
        registry.makeGauge(name: "vmhostd_events", labels: [], help: "Number of the newest event").set(to: Double(agent.context.events.lastSequence))
        for datastore in agent.datastores {
            let view = agent.volumeView(datastore)
            let labels = [("volume", view.name)]
            registry.makeGauge(name: "vmhostd_volume_attached", labels: labels, help: "1 while the volume is attached").set(to: view.state == "attached" ? 1 : 0)
            if let free = view.freeBytes {
                registry.makeGauge(name: "vmhostd_volume_free_bytes", labels: labels, help: "Free space of the volume").set(to: Double(free))
            }
            if let files = view.fileCount {
                registry.makeGauge(name: "vmhostd_volume_files", labels: labels, help: "Files on the volume (at most 255)").set(to: Double(files))
            }
        }
        for summary in agent.vmSummaries {
            guard let vm = try? agent.lookup(summary.uuid) else { continue }
            let statistics = vm.statistics
            let labels = [("vm", summary.name), ("uuid", summary.uuid)]
            registry.makeGauge(name: "vmhostd_vm_running", labels: labels, help: "1 while the VM's VMM runs").set(to: summary.power.isActive ? 1 : 0)
            registry.makeGauge(name: "vmhostd_vm_cpu_seconds", labels: labels, help: "CPU seconds of the VM's VMM process").set(to: Double(statistics.cpuNanoseconds) / 1e9)
            registry.makeGauge(name: "vmhostd_vm_resident_bytes", labels: labels, help: "Resident memory of the VM's VMM process").set(to: Double(statistics.residentBytes))
            for (index, disk) in statistics.disks.enumerated() {
                let diskLabels = labels + [("disk", "\(index)")]
                registry.makeGauge(name: "vmhostd_vm_disk_read_bytes", labels: diskLabels, help: "Bytes the VM read from the disk this run").set(to: Double(disk.bytesRead))
                registry.makeGauge(name: "vmhostd_vm_disk_written_bytes", labels: diskLabels, help: "Bytes the VM wrote to the disk this run").set(to: Double(disk.bytesWritten))
                registry.makeGauge(name: "vmhostd_vm_disk_operations", labels: diskLabels, help: "Reads, writes and flushes of the disk this run")
                    .set(to: Double(disk.reads + disk.writes + disk.flushes))
            }
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
