import VMFSCore

extension VirtualMachineStore {
    /// Every VM on the volume with its state. Configurations are read without locks, so VMs
    /// running on other hosts are listed too. A VM whose `.vmx` or disk descriptor cannot be
    /// used is listed as `invalid` with the reason; it never hides the others.
    public func list() throws(VMError) -> [Summary] {
        let files = try wrap { () throws(VMFSError) in try volume.list() }
        let inspector = try wrap { () throws(VMFSError) in try VolumeInspector(device: volume.device) }
        let locks = (try? inspector.locks()) ?? []
        let sizes = Dictionary(files.map { ($0.name, $0.size) }, uniquingKeysWith: { first, _ in first })
        func text(_ file: String) throws(VMError) -> String {
            guard let size = sizes[file] else { throw VMError(.notFound, "\(file) is missing") }
            guard size <= Self.maximumDescriptorSize else {
                throw VMError(.malformedConfiguration, "\(file) is \(size) bytes; a configuration file is at most \(Self.maximumDescriptorSize) bytes")
            }
            do {
                return String(decoding: try inspector.contents(of: file, limit: Int(size)), as: UTF8.self)
            } catch {
                throw VMError(.storage, "reading \(file): \(error.description)")
            }
        }
        var result: [Summary] = []
        for file in files where file.name.hasSuffix(".vmx") {
            let lock = locks.first { $0.object == "file '\(file.name)'" && $0.mode == "exclusive" }
            let owner = lock?.holders.first.map { "\($0.hostName.isEmpty ? $0.host : $0.hostName) (slot \($0.slot)) since \($0.since)" }
            var summary = Summary(name: String(file.name.dropLast(4)), vcpuCount: 0, memoryBytes: 0, diskBytes: [],
                                  state: lock == nil ? "stopped" : "running", runningOn: owner)
            do throws(VMError) {
                let definition = try VirtualMachineDefinition(vmx: try VMXFile(parsing: try text(file.name), fileName: file.name),
                                                              fileName: file.name)
                summary.vcpuCount = definition.vcpuCount
                summary.memoryBytes = definition.memoryBytes
                for disk in definition.disks {
                    summary.diskBytes.append(try VMDKDescriptor(parsing: try text(disk), fileName: disk).byteCount)
                }
            } catch {
                summary.state = lock == nil ? "invalid" : "running"
                summary.problem = error.message
            }
            result.append(summary)
        }
        return result.sorted { $0.name < $1.name }
    }
}
