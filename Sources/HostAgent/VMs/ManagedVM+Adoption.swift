internal import VMFSCore
internal import Hypervisor
internal import VMManagement
internal import VMXProtocol
internal import SystemSupport
#if canImport(Glibc)
internal import Glibc
#endif

extension ManagedVM {
    /// Takes over a VMM left running by a previous agent: reconnects, opens the VM's files again
    /// (their locks were adopted with the host's slot, or are taken now), gives the VMM new disk
    /// channels and a lease. If another host holds the files now (this host was declared dead and
    /// the VM restarted elsewhere) the VMM is stopped: a VM never runs twice.
    func adopt(_ record: RuntimeRecord) throws(AgentError) {
        try exclusively("adopt") { () throws(AgentError) in
            let process = try VMMProcess.adopt(pid: record.pid)
            guard process.startTicks == record.pidStartTicks else {
                throw AgentError(.notFound, "process \(record.pid) is not the VMM of '\(name)' any more")
            }
            let channel: ControlChannel
            do { channel = try ControlChannel.connect(path: record.socketPath) } catch {
                process.kill()
                throw AgentError(.failed, "cannot reach the VMM of '\(name)' at \(record.socketPath): \(error)")
            }
            let volume = try datastore.volume()
            let files: VMFileSet
            do throws(VMError) {
                files = try VMFileSet.open(volume: volume, name: name, client: client)
            } catch {
                try? channel.send(.powerOff)
                process.kill()
                state.withLock { s in
                    s.power = .lost
                    s.reason = "its files are held elsewhere: \(error.message)"
                }
                self.record(.vmLockLost, "VM '\(name)' was not adopted and its VMM was stopped: \(error.message)", severity: .error)
                throw Self.agentError(error)
            }
            var disks: [DiskServer] = []
            do throws(AgentError) {
                try makeDiskServers(files, into: &disks)
                let console = ConsoleLog(handle: files.log, fileCapacity: context.settings.consoleLogCapacity)
                let ports = adoptNetwork(files.definition)
                state.withLock { s in
                    s.console = console
                    s.runtime = Runtime(files: files, process: process, connection: nil, disks: disks, socketPath: record.socketPath,
                                        ports: ports)
                    s.poweredOnWall = record.poweredOnNanoseconds
                    let age = UInt64(max(0, MonotonicClock.wallNanoseconds - record.poweredOnNanoseconds))
                    s.poweredOnMonotonic = MonotonicClock.nanoseconds - min(age, MonotonicClock.nanoseconds)
                    s.power = .running
                }
                let connection = try connect(channel)
                let reply = try connection.request(.hello(HelloRequest(agent: "vmhostd", host: context.settings.host.name)),
                                                   timeoutNanoseconds: 5_000_000_000) { if case .helloReply = $0 { true } else { false } }
                guard case .helloReply(let hello) = reply, hello.vmUUID == uuid else {
                    throw AgentError(.failed, "the VMM at \(record.socketPath) does not run VM '\(name)'")
                }
                try attach(disks, to: connection)
                state.withLock { s in s.power = hello.state == .paused ? .paused : .running }
                watch(process)
                renewLease()
                console.note("\(name) adopted by the host agent of \(context.settings.host.name)")
                self.record(.vmAdopted, "VM '\(name)' (VMM pid \(process.pid)) was adopted by this agent")
            } catch {
                for disk in disks { disk.stop() }
                state.withLock { s in
                    s.runtime = nil
                    s.power = .crashed
                    s.reason = error.message
                }
                try? channel.send(.powerOff)
                process.kill()
                files.close()
                throw error
            }
        }
    }

    /// Gives a running (or restored) VMM its disk channels and starts serving them.
    func attach(_ disks: [DiskServer], to connection: VMMConnection) throws(AgentError) {
        var descriptors: [Int32] = []
        let specifications = Self.diskSpecifications(disks, descriptors: &descriptors)
        try connection.send(.attachDisks(DiskAttachment(disks: specifications)), descriptors: descriptors)
        for disk in disks {
            do { try disk.start() } catch { throw AgentError(.failed, "cannot serve the disks: \(error)") }
        }
    }
}
