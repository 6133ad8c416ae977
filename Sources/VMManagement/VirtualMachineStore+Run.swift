import FoundationEssentials
public import Hypervisor
import VMFSCore

extension VirtualMachineStore {
    /// Runs VM `name` in this process until it powers off, holding its locks meanwhile.
    ///
    /// Boot images are copied from the volume into a private directory (mode 0700) that is
    /// removed when the run ends; each may be at most ``maximumBootImageSize`` bytes and no
    /// larger than the VM's memory. The console goes to `NAME.log`, kept under the `.vmx`'s
    /// `log.sizeLimit`.
    ///
    /// - Parameter console: Also receives the console output (the `.log` always does).
    /// - Throws: ``VMError/Code/busy`` naming the host that runs it already.
    /// - Parameter started: Called with the machine once it is built, before it runs (to stop it
    ///   from a signal handler, for example).
    /// - Parameter networkInterfaces: Makes the host ports of the VM's NICs (`vmctl run` connects
    ///   them to the virtual switches); required when the `.vmx` has NICs.
    public func run(_ name: String, console: (any ConsoleSink)? = StandardOutputConsole(),
                    timeLimit: Double? = nil, started: (@Sendable (VirtualMachine) -> Void)? = nil,
                    networkInterfaces: ((VirtualMachineDefinition) throws(VMError) -> [NetworkInterfaceConfiguration])? = nil)
        throws(VMError) -> PowerOffReason {
        let vmxName = "\(name).vmx"
        guard (try? volume.status(of: vmxName)) != nil else { throw VMError(.notFound, "no VM named '\(name)' (no \(vmxName))") }
        let vmx: VMFSCore.FileHandle
        do throws(VMFSError) {
            vmx = try volume.open(vmxName, access: .readWrite)
        } catch where error.code == .busy {
            throw VMError(.busy, "VM '\(name)' is already running: \(error.message)")
        } catch {
            throw VMError(.storage, error.description)
        }
        var handles: [VMFSCore.FileHandle] = [vmx]
        defer { for handle in handles.reversed() { try? handle.close() } }
        let definition = try VirtualMachineDefinition(vmx: try VMXFile(parsing: try Self.text(of: vmx, name: vmxName), fileName: vmxName),
                                                      fileName: vmxName)
        var disks: [any DiskBackend] = []
        for disk in definition.disks {
            let descriptor = try VMDKDescriptor(parsing: try readText(disk), fileName: disk)
            let handle: VMFSCore.FileHandle
            do throws(VMFSError) {
                handle = try volume.open(descriptor.extentFileName, access: .readWrite)
            } catch {
                throw VMError(error.code == .busy ? .busy : .storage, "disk '\(descriptor.extentFileName)' of VM '\(name)': \(error.message)")
            }
            handles.append(handle)
            guard handle.size >= descriptor.byteCount else {
                throw VMError(.storage, "disk '\(descriptor.extentFileName)' is \(handle.size) bytes; its descriptor says \(descriptor.byteCount)")
            }
            disks.append(VMFSDiskBackend(handle: handle, identifier: String("\(name)-\(disks.count)".prefix(20))))
        }
        var nics: [NetworkInterfaceConfiguration] = []
        if !definition.networkInterfaces.isEmpty {
            guard let networkInterfaces else {
                throw VMError(.invalidArgument, "VM '\(name)' has \(definition.networkInterfaces.count) NIC(s): give the virtual switches it uses "
                              + "(vmctl run --network-config FILE) or run it through the host agent")
            }
            nics = try networkInterfaces(definition)
        }
        let log = try wrap { () throws(VMFSError) in try volume.open("\(name).log", access: .readWrite) }
        handles.append(log)
        let sink = VolumeLogConsole(handle: log, next: console, sizeLimit: definition.logSizeLimit)
        let host = volume.options.host
        sink.write(Array("--- \(name) started on host \(host.name) (\(host.uuid)) at \(formatWallTime(Int64(Date().timeIntervalSince1970 * 1e9))) ---\n".utf8))
        do {
            // The images are read while the machine is built; their directory goes away right after.
            let images = try BootImageDirectory()
            let configuration: VirtualMachineConfiguration
            let machine: VirtualMachine
            do {
                defer { images.remove() }
                configuration = VirtualMachineConfiguration(
                    vcpuCount: definition.vcpuCount, memorySize: definition.memoryBytes, disks: disks,
                    bootSource: try bootSource(of: definition, in: images), console: sink, networkInterfaces: nics)
                machine = try VirtualMachine(configuration: configuration)
            }
            started?(machine)
            let reason = try machine.run(timeLimit: timeLimit)
            sink.write(Array("--- \(name) stopped: \(reason) ---\n".utf8))
            sink.flush()
            return reason
        } catch {
            sink.write(Array("--- \(name) failed: \(error) ---\n".utf8))
            sink.flush()
            if let error = error as? VMError { throw error }
            throw VMError(.hypervisor, "VM '\(name)': \(error)")
        }
    }

    /// Copies the VM's boot images into `images` and describes how to boot from them.
    private func bootSource(of definition: VirtualMachineDefinition, in images: BootImageDirectory) throws(VMError) -> BootSource {
        let limit = min(Self.maximumBootImageSize, definition.memoryBytes)
        switch definition.boot {
        case .linux(let kernel, let initrd, let commandLine):
            let kernelPath = try images.extract(kernel, from: volume, limit: limit)
            let initrdPath: String? = if let initrd { try images.extract(initrd, from: volume, limit: limit) } else { nil }
            return .linux(LinuxBootConfiguration(kernelPath: kernelPath, initrdPath: initrdPath, commandLine: commandLine))
        case .testGuest(let image, let workload, let arguments):
            return .testGuest(TestGuestConfiguration(imagePath: try images.extract(image, from: volume, limit: limit),
                                                     workload: workload, arguments: arguments))
        }
    }
}
