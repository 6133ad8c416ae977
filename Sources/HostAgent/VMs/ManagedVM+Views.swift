public import VMFSCore
internal import VMManagement
internal import Hypervisor
internal import VMXProtocol
internal import SystemSupport
internal import Synchronization

/// A VM as the API lists it.
public struct VMSummaryView: Sendable, Equatable {
    public var uuid: String
    public var name: String
    public var datastore: String
    public var power: VMPowerState
    public var reason: String?
    public var vcpuCount: Int
    public var memoryBytes: UInt64
    public var diskBytes: [UInt64]
    public var poweredOnWallNanoseconds: Int64?
    public var vmmPID: Int32?
}

/// A VM with its files, boot settings and recent guest markers.
public struct VMDetailView: Sendable, Equatable {
    public enum Boot: Sendable, Equatable {
        case linux(kernel: String, initrd: String?, commandLine: String)
        case testGuest(image: String, workload: String, arguments: [UInt64])
    }

    public var summary: VMSummaryView
    public var files: [String]
    public var boot: Boot?
    public var guestStatus: UInt32?
    public var markers: [(code: UInt32, vcpu: Int, monotonicNanoseconds: UInt64)]
    public var firstInstructionMonotonicNanoseconds: UInt64?
    /// Tools heartbeats this run, and how long before this view the last one arrived.
    public var toolsHeartbeats: UInt64 = 0
    public var toolsHeartbeatAgeNanoseconds: UInt64?

    public static func == (lhs: VMDetailView, rhs: VMDetailView) -> Bool {
        lhs.summary == rhs.summary && lhs.files == rhs.files && lhs.boot == rhs.boot && lhs.guestStatus == rhs.guestStatus
            && lhs.firstInstructionMonotonicNanoseconds == rhs.firstInstructionMonotonicNanoseconds
    }
}

/// What a VM uses.
public struct VMStatisticsView: Sendable, Equatable {
    public var uuid: String
    public var power: VMPowerState
    public var uptimeNanoseconds: UInt64
    public var cpuNanoseconds: UInt64
    public var residentBytes: UInt64
    public var disks: [DiskServer.Counters]
}

/// The settings of a VM read from its `.vmx` and descriptors, kept so listing needs no volume I/O.
struct VMSettings: Sendable, Equatable {
    var definition: VirtualMachineDefinition
    var diskBytes: [UInt64]
    var files: [String]

    /// Reads them without locks (the VM may be running on another host).
    static func read(name: String, volume: Volume) throws(AgentError) -> VMSettings {
        do {
            let inspector = try VolumeInspector(device: volume.device)
            let fileName = "\(name).vmx"
            let text = String(decoding: try inspector.contents(of: fileName), as: UTF8.self)
            let definition: VirtualMachineDefinition
            do { definition = try VirtualMachineDefinition(vmx: VMXFile(parsing: text, fileName: fileName), fileName: fileName) } catch {
                throw AgentError(.invalidArgument, error.message)
            }
            var sizes: [UInt64] = []
            var files = [fileName, "\(name).log"] + definition.bootFiles
            for disk in definition.disks {
                files.append(disk)
                let descriptorText = String(decoding: (try? inspector.contents(of: disk)) ?? [], as: UTF8.self)
                if let descriptor = try? VMDKDescriptor(parsing: descriptorText, fileName: disk) {
                    sizes.append(descriptor.byteCount)
                    files.append(descriptor.extentFileName)
                } else {
                    sizes.append(0)
                }
            }
            return VMSettings(definition: definition, diskBytes: sizes, files: files)
        } catch let error as AgentError {
            throw error
        } catch let error as VMFSError {
            throw AgentError(error.code == .notFound ? .notFound : .storageUnavailable, "VM '\(name)': \(error.message)")
        } catch {
            throw AgentError(.failed, "VM '\(name)': \(error)")
        }
    }
}

extension ManagedVM {
    /// The VM's settings, read once from the volume and cached.
    func settings() -> VMSettings? {
        if let cached = cachedSettings.withLock({ $0 }) { return cached }
        guard let volume = try? datastore.volume(), let settings = try? VMSettings.read(name: name, volume: volume) else { return nil }
        cachedSettings.withLock { $0 = settings }
        return settings
    }

    public var summary: VMSummaryView {
        let settings = settings()
        return state.withLock { s in
            VMSummaryView(uuid: uuid, name: name, datastore: datastore.name, power: s.power, reason: s.reason,
                          vcpuCount: settings?.definition.vcpuCount ?? 0, memoryBytes: settings?.definition.memoryBytes ?? 0,
                          diskBytes: settings?.diskBytes ?? [], poweredOnWallNanoseconds: s.power.isActive ? s.poweredOnWall : nil,
                          vmmPID: s.runtime?.process.pid)
        }
    }

    public var detail: VMDetailView {
        let settings = settings()
        let boot: VMDetailView.Boot? = settings.map { settings in
            switch settings.definition.boot {
            case .linux(let kernel, let initrd, let commandLine): .linux(kernel: kernel, initrd: initrd, commandLine: commandLine)
            case .testGuest(let image, let workload, let arguments): .testGuest(image: image, workload: "\(workload)", arguments: arguments)
            }
        }
        return state.withLock { s in
            VMDetailView(summary: VMSummaryView(uuid: uuid, name: name, datastore: datastore.name, power: s.power, reason: s.reason,
                                                vcpuCount: settings?.definition.vcpuCount ?? 0,
                                                memoryBytes: settings?.definition.memoryBytes ?? 0, diskBytes: settings?.diskBytes ?? [],
                                                poweredOnWallNanoseconds: s.power.isActive ? s.poweredOnWall : nil,
                                                vmmPID: s.runtime?.process.pid),
                         files: settings?.files ?? [], boot: boot, guestStatus: s.guestStatus,
                         markers: s.markers.suffix(64).map { ($0.code, $0.vcpu, $0.monotonicNanoseconds) },
                         firstInstructionMonotonicNanoseconds: s.firstInstruction, toolsHeartbeats: s.heartbeats,
                         toolsHeartbeatAgeNanoseconds: s.lastHeartbeat.map { MonotonicClock.nanoseconds.subtractingClamped($0) })
        }
    }

    public var statistics: VMStatisticsView {
        let (power, process, disks, since) = state.withLock { s in
            (s.power, s.runtime?.process, s.runtime?.disks ?? [], s.power.isActive ? s.poweredOnMonotonic : nil)
        }
        let usage = process?.usage()
        return VMStatisticsView(uuid: uuid, power: power, uptimeNanoseconds: since.map { MonotonicClock.nanoseconds - $0 } ?? 0,
                                cpuNanoseconds: usage?.cpuNanoseconds ?? 0, residentBytes: usage?.residentBytes ?? 0,
                                disks: disks.map(\.statistics))
    }

    /// The guest's tools heartbeats this run: how many, and the monotonic time of the last.
    public var guestHeartbeats: (count: UInt64, last: UInt64?) { state.withLock { ($0.heartbeats, $0.lastHeartbeat) } }

    /// When the VM was powered on (monotonic), while it runs.
    var poweredOnMonotonic: UInt64? { state.withLock { $0.power.isActive ? $0.poweredOnMonotonic : nil } }

    /// Memory the VM needs (from its settings).
    var memoryBytes: UInt64 { settings()?.definition.memoryBytes ?? 0 }

    /// The console log of the VM's last (or current) run.
    public var console: ConsoleLog? { state.withLock { $0.console } }

    /// Sends console input (see ``sendConsoleInput(_:)``).
    public func type(_ bytes: [UInt8]) throws(AgentError) { try sendConsoleInput(bytes) }
}
