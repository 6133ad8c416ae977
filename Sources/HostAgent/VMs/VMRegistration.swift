internal import VMFSCore
internal import VMManagement
internal import FoundationEssentials

/// Reading and assigning a VM's identity (`uuid.bios` in its `.vmx`).
enum VMRegistration {
    /// The UUID of VM `name` on `volume`. A `.vmx` without one gets one now (written under the
    /// `.vmx` lock, so not while the VM runs anywhere).
    static func identity(of name: String, on volume: Volume) throws(AgentError) -> String {
        let fileName = "\(name).vmx"
        let text: String
        do {
            let inspector = try VolumeInspector(device: volume.device)
            text = String(decoding: try inspector.contents(of: fileName), as: UTF8.self)
        } catch {
            throw AgentError(error.code == .notFound ? .notFound : .storageUnavailable,
                             "cannot read '\(fileName)': \(error.message)", field: "name")
        }
        let definition: VirtualMachineDefinition
        do { definition = try VirtualMachineDefinition(vmx: VMXFile(parsing: text, fileName: fileName), fileName: fileName) } catch {
            throw AgentError(.invalidArgument, error.message, field: "name")
        }
        if let uuid = definition.uuid { return uuid }
        let uuid = UUID().uuidString.lowercased()
        var updated = definition
        updated.uuid = uuid
        do {
            let handle = try volume.open(fileName, access: .readWrite, client: FileClient("registration"))
            defer { try? handle.close() }
            let bytes = Array(updated.vmx.text.utf8)
            try handle.truncate(to: 0)
            try handle.write(bytes: bytes, at: 0)
            try handle.sync()
        } catch {
            throw AgentError(error.code == .busy ? .busy : .storageUnavailable,
                             "cannot give VM '\(name)' an identity: \(error.message)", owner: error.code == .busy ? error.message : nil)
        }
        return uuid
    }
}
