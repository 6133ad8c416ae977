public import VMFSCore
internal import SystemSupport
internal import FoundationEssentials
#if canImport(Glibc)
internal import Glibc
#endif

/// A volume as the API shows it.
public struct VolumeView: Sendable, Equatable {
    public var name: String
    public var device: String
    public var state: String
    public var message: String?
    public var uuid: String?
    public var label: String?
    public var slot: Int?
    public var blockSize: UInt64?
    public var capacityBytes: UInt64?
    public var freeBytes: UInt64?
    public var fileCount: Int?
    public var maxFiles: Int?
}

/// The host's CPU, memory and VM counts.
public struct HostStatisticsView: Sendable, Equatable {
    public var cpuCount: Int
    public var cpuBusySeconds: Double
    public var cpuTotalSeconds: Double
    public var loadAverage: [Double]
    public var memoryTotalBytes: UInt64
    public var memoryAvailableBytes: UInt64
    public var agentResidentBytes: UInt64
    public var agentCPUSeconds: Double
    public var vmsRegistered: Int
    public var vmsRunning: Int
    public var uptimeSeconds: Double
}

extension HostAgent {
    public var vmSummaries: [VMSummaryView] { allVMs.map(\.summary).sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) } }

    public func volumeView(_ datastore: Datastore) -> VolumeView {
        var view = VolumeView(name: datastore.name, device: datastore.configuration.device, state: "attaching")
        switch datastore.status {
        case .attaching: view.state = "attaching"
        case .attached: view.state = "attached"
        case .detached: view.state = "detached"
        case .unreachable(let message):
            view.state = "unreachable"
            view.message = message
        }
        if let volume = try? datastore.volume() {
            view.uuid = "\(volume.header.uuid)"
            view.label = volume.header.label
            view.slot = volume.membership?.slot
            if let statistics = try? volume.statistics() {
                view.blockSize = UInt64(statistics.blockSize)
                view.capacityBytes = statistics.totalBlocks * UInt64(statistics.blockSize)
                view.freeBytes = statistics.freeBlocks * UInt64(statistics.blockSize)
                view.fileCount = statistics.files
                view.maxFiles = statistics.maxFiles
            }
        }
        return view
    }

    public func volumeHosts(_ name: String) throws(AgentError) -> [HostInfo] {
        let volume = try datastore(named: name).volume()
        do { return try volume.hosts() } catch { throw Self.agentError(error, file: nil) }
    }

    public func volumeLocks(_ name: String) throws(AgentError) -> [LockInfo] {
        let volume = try datastore(named: name).volume()
        do { return try VolumeInspector(device: volume.device).locks() } catch { throw Self.agentError(error, file: nil) }
    }

    /// Recovers dead hosts of the volume (or `slot`, with `force` even if it looks alive).
    public func recover(_ name: String, slot: Int?, force: Bool, waitMilliseconds: UInt64) throws(AgentError) -> [Int] {
        let volume = try datastore(named: name).volume()
        if let slot, slot == volume.membership?.slot {
            throw AgentError(.invalidArgument, "slot \(slot) is this host's own heartbeat slot", field: "slot")
        }
        if let slot, slot < 0 || slot >= Int(volume.header.layout.maxHosts) {
            throw AgentError(.invalidArgument, "slot \(slot) is outside the volume's \(volume.header.layout.maxHosts) heartbeat slots", field: "slot")
        }
        do {
            if let slot { return try volume.recover(slot: slot, force: force) ? [slot] : [] }
            return try volume.recoverDeadHosts(waitMilliseconds: waitMilliseconds)
        } catch {
            throw Self.agentError(error, file: nil)
        }
    }

    /// Frees the lock of `file` (or lock `index`).
    public func breakLock(_ name: String, file: String?, index: Int?, force: Bool) throws(AgentError) -> String {
        let volume = try datastore(named: name).volume()
        do {
            let lock: Int
            if let file {
                lock = try VolumeInspector(device: volume.device).lockIndex(ofFile: file)
            } else if let index {
                guard index >= 0, index < Int(volume.header.layout.lockCount) else {
                    throw AgentError(.invalidArgument, "lock \(index) is outside the volume's \(volume.header.layout.lockCount) locks", field: "index")
                }
                lock = index
            } else {
                throw AgentError(.invalidArgument, "name a file or a lock index", field: "file")
            }
            return try volume.breakLock(lock, force: force)
        } catch let error as AgentError {
            throw error
        } catch let error as VMFSError {
            throw Self.agentError(error, file: file)
        } catch {
            throw AgentError(.failed, "\(error)")
        }
    }

    public var hostStatistics: HostStatisticsView {
        let (busy, total) = Self.cpuTimes()
        let memory = Self.memoryInfo()
        let loads = (ProcessUsage.text("/proc/loadavg") ?? "").split(separator: " ").prefix(3).compactMap { Double($0) }
        let usage = ProcessUsage.read(pid: getpid())
        let vms = allVMs
        return HostStatisticsView(
            cpuCount: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), cpuBusySeconds: busy, cpuTotalSeconds: total, loadAverage: loads,
            memoryTotalBytes: memory.total, memoryAvailableBytes: memory.available,
            agentResidentBytes: usage?.residentBytes ?? 0, agentCPUSeconds: Double(usage?.cpuNanoseconds ?? 0) / 1e9,
            vmsRegistered: vms.count, vmsRunning: vms.filter { $0.power.isActive }.count,
            uptimeSeconds: Double(MonotonicClock.wallNanoseconds - startedWall) / 1e9)
    }

    /// Busy and total CPU seconds of the host since boot (`/proc/stat`).
    static func cpuTimes() -> (busy: Double, total: Double) {
        guard let line = ProcessUsage.text("/proc/stat")?.split(separator: "\n").first, line.hasPrefix("cpu ") else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return (0, 0) }
        let ticks = Double(ProcessUsage.ticksPerSecond)
        let total = values.reduce(0, +) / ticks
        let idle = (values[3] + values[4]) / ticks
        return (total - idle, total)
    }

    static func memoryInfo() -> (total: UInt64, available: UInt64) {
        var total: UInt64 = 0, available: UInt64 = 0
        for line in (ProcessUsage.text("/proc/meminfo") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let kib = UInt64(parts[1]) else { continue }
            if parts[0] == "MemTotal:" { total = kib * 1024 }
            if parts[0] == "MemAvailable:" { available = kib * 1024 }
        }
        return (total, available)
    }
}
