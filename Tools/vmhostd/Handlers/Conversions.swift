import Foundation
import HostAgent
import HostAgentAPI
import VMFSCore

/// Library views as API schema values.
enum Conversions {
    static func error(_ error: AgentError) -> Components.Schemas._Error {
        Components.Schemas._Error(code: .init(rawValue: error.code.rawValue) ?? .failed, message: error.message,
                                  field: error.field, owner: error.owner)
    }

    static func task(_ task: AgentTask) -> Components.Schemas.Task {
        Components.Schemas.Task(
            id: task.id, operation: task.operation, target: task.target, state: .init(rawValue: task.state.rawValue) ?? .error,
            progress: task.progress, queuedAt: Date(wallNanoseconds: task.queuedNanoseconds),
            startedAt: task.startedNanoseconds.map(Date.init(wallNanoseconds:)),
            finishedAt: task.finishedNanoseconds.map(Date.init(wallNanoseconds:)), error: task.error.map(error), result: task.result)
    }

    static func summary(_ vm: VMSummaryView) -> Components.Schemas.VMSummary {
        Components.Schemas.VMSummary(
            id: vm.uuid, name: vm.name, volume: vm.datastore, powerState: .init(rawValue: vm.power.rawValue) ?? .crashed,
            reason: vm.reason, vcpus: vm.vcpuCount, memoryBytes: Int64(clamping: vm.memoryBytes),
            diskBytes: vm.diskBytes.map { Int64(clamping: $0) }, poweredOnAt: vm.poweredOnWallNanoseconds.map(Date.init(wallNanoseconds:)),
            vmmPid: vm.vmmPID.map(Int.init))
    }

    static func detail(_ vm: VMDetailView) -> Components.Schemas.VMDetail {
        let boot: Components.Schemas.Boot = switch vm.boot {
        case .linux(let kernel, let initrd, let commandLine)?:
            .init(_type: .linux, kernel: kernel, initrd: initrd, commandLine: commandLine)
        case .testGuest(let image, let workload, let arguments)?:
            .init(_type: .testGuest, image: image, workload: workload, arguments: arguments.map { Int64(bitPattern: $0) })
        case nil:
            .init(_type: .testGuest)
        }
        return Components.Schemas.VMDetail(
            summary: summary(vm.summary), files: vm.files, boot: boot, guestStatus: vm.guestStatus.map(Int64.init),
            markers: vm.markers.map { .init(code: Int64($0.code), vcpu: $0.vcpu, monotonicNanoseconds: Int64(clamping: $0.monotonicNanoseconds)) },
            firstInstructionNanoseconds: vm.firstInstructionMonotonicNanoseconds.map { Int64(clamping: $0) },
            toolsHeartbeats: Int64(clamping: vm.toolsHeartbeats),
            toolsHeartbeatAgeMilliseconds: vm.toolsHeartbeatAgeNanoseconds.map { Int64(clamping: $0 / 1_000_000) })
    }

    static func disk(_ counters: DiskServer.Counters) -> Components.Schemas.DiskStatistics {
        Components.Schemas.DiskStatistics(
            reads: Int64(clamping: counters.reads), writes: Int64(clamping: counters.writes), flushes: Int64(clamping: counters.flushes),
            discards: Int64(clamping: counters.discards), bytesRead: Int64(clamping: counters.bytesRead),
            bytesWritten: Int64(clamping: counters.bytesWritten), errors: Int64(clamping: counters.errors),
            rejected: Int64(clamping: counters.rejected))
    }

    static func volume(_ view: VolumeView, mounts: [String]) -> Components.Schemas.VolumeStatus {
        Components.Schemas.VolumeStatus(
            name: view.name, device: view.device, state: .init(rawValue: view.state) ?? .unreachable, message: view.message,
            uuid: view.uuid, label: view.label, slot: view.slot, blockSize: view.blockSize.map { Int64(clamping: $0) },
            capacityBytes: view.capacityBytes.map { Int64(clamping: $0) }, freeBytes: view.freeBytes.map { Int64(clamping: $0) },
            fileCount: view.fileCount, maxFiles: view.maxFiles, mountPoints: mounts)
    }

    static func file(_ status: FileStatus) -> Components.Schemas.FileInfo {
        Components.Schemas.FileInfo(
            name: status.name, size: Int64(clamping: status.size), allocatedBytes: Int64(clamping: status.allocatedBytes),
            mode: Int(status.mode), uid: Int64(status.uid), gid: Int64(status.gid),
            modifiedAt: Date(wallNanoseconds: status.modificationTime))
    }

    static func event(_ event: HostEvent) -> Components.Schemas.Event {
        Components.Schemas.Event(
            sequence: Int64(clamping: event.sequence), time: Date(wallNanoseconds: event.timeNanoseconds), kind: event.kind.rawValue,
            severity: .init(rawValue: event.severity.rawValue) ?? .info, vm: event.vm, vmName: event.vmName, volume: event.volume,
            message: event.message)
    }
}
