internal import CKVM
#if canImport(Glibc)
internal import Glibc
#endif

/// The devices and state a vCPU thread dispatches exits to.
struct ExitDispatcher: Sendable {
    let portBus: PortIOBus
    let mmioBus: MMIOBus
    let power: PowerControl
    let markers: GuestMarkerPort
    let control: RunControl
    let heartbeat: GuestHeartbeatPort

    /// Handles one port I/O exit (including `rep ins/outs`: `count` items of `size` bytes).
    func handlePortIO(vcpu: Int, port: UInt16, size: Int, count: Int, isWrite: Bool, data: UnsafeMutableRawPointer) {
        guard size == 1 || size == 2 || size == 4 else { return }
        for item in 0..<count {
            let slot = data + item * size
            if isWrite {
                let value: UInt32 = switch size {
                case 1: UInt32(slot.load(as: UInt8.self))
                case 2: UInt32(slot.loadUnaligned(as: UInt16.self))
                default: slot.loadUnaligned(as: UInt32.self)
                }
                if port == TestGuestABI.toolsHeartbeatPort {
                    heartbeat.beat()
                } else if port == TestGuestABI.markerPort {
                    markers.record(code: value, vcpu: vcpu)
                } else if port == TestGuestABI.parkPort {
                    control.outsideGuest { power.waitWhileRunning() }
                } else {
                    portBus.write(port: port, size: size, value: value)
                }
            } else {
                let value = portBus.read(port: port, size: size)
                switch size {
                case 1: slot.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
                case 2: slot.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
                default: slot.storeBytes(of: value, as: UInt32.self)
                }
            }
        }
    }

    func handleMMIO(address: UInt64, length: Int, isWrite: Bool, data: UnsafeMutableRawPointer) {
        guard (1...8).contains(length) else { return }
        if isWrite {
            var value: UInt64 = 0
            for i in 0..<length { value |= UInt64(data.load(fromByteOffset: i, as: UInt8.self)) << (8 * UInt64(i)) }
            mmioBus.write(address: address, size: length, value: value)
        } else {
            let value = mmioBus.read(address: address, size: length)
            for i in 0..<length { data.storeBytes(of: UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))), toByteOffset: i, as: UInt8.self) }
        }
    }
}

/// One host thread running one vCPU until the machine powers off.
final class VCPUThread: Sendable {
    let vcpu: KVMVCPU
    let dispatcher: ExitDispatcher
    private let handle: pthread_t

    /// Starts the thread; it enters the guest immediately.
    init(vcpu: KVMVCPU, dispatcher: ExitDispatcher) throws(HypervisorError) {
        self.vcpu = vcpu
        self.dispatcher = dispatcher
        let context = Unmanaged.passRetained(VCPULoop(vcpu: vcpu, dispatcher: dispatcher)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let loop = Unmanaged<VCPULoop>.fromOpaque(raw).takeRetainedValue()
            loop.run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<VCPULoop>.fromOpaque(context).release()
            throw .systemCall("pthread_create for vCPU \(vcpu.index)", errno: result)
        }
        handle = thread
    }

    /// Interrupts the thread's `KVM_RUN`, if it is in one. Whoever kicks first sets
    /// `immediate_exit` through ``RunControl`` so that an entry racing the signal also returns.
    func kick() {
        _ = ckvm_thread_kick(UInt(handle), CKVM_KICK_SIGNAL)
    }

    /// Waits for the thread to finish.
    func join() {
        _ = pthread_join(handle, nil)
    }
}

/// The body of a vCPU thread.
private final class VCPULoop: Sendable {
    let vcpu: KVMVCPU
    let dispatcher: ExitDispatcher

    init(vcpu: KVMVCPU, dispatcher: ExitDispatcher) {
        self.vcpu = vcpu
        self.dispatcher = dispatcher
    }

    /// "at rip … cs …" for failure reports; empty if the registers cannot be read.
    var stateSummary: String {
        guard let regs = try? vcpu.registers(), let sregs = try? vcpu.specialRegisters() else { return "" }
        func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
        return "at rip \(hex(regs.rip)) rsp \(hex(regs.rsp)) rflags \(hex(regs.rflags)) cs \(hex(UInt64(sregs.cs.selector)))"
            + " cr0 \(hex(sregs.cr0)) cr3 \(hex(sregs.cr3)) cr4 \(hex(sregs.cr4)) efer \(hex(sregs.efer))"
    }

    func run() {
        _ = ckvm_unblock_signal(CKVM_KICK_SIGNAL)
        let power = dispatcher.power
        var seenEpoch: UInt64 = 0
        while power.powerOffReason == nil {
            if !dispatcher.control.isCurrent(seenEpoch) {
                // Asked to leave: finish the exit just handled first (KVM completes a port or MMIO
                // access, and moves RIP past it, only on the next KVM_RUN; with immediate_exit
                // set that run returns at once), so a saved state never holds a half-done access.
                guard completePendingExits() else { return }
            }
            guard dispatcher.control.awaitRunnable(vcpu, seenEpoch: &seenEpoch) else { return }
            guard handle(runOnce()) else { return }
        }
    }

    private func runOnce() -> VCPUExit? {
        do {
            return try vcpu.runOnce()
        } catch {
            dispatcher.power.requestPowerOff(.vcpuFailure(vcpu: vcpu.index, description: error.description))
            return nil
        }
    }

    /// Runs `KVM_RUN` (with `immediate_exit` set by the request) until it returns without a new
    /// exit to handle. Returns false when the machine is going away.
    private func completePendingExits() -> Bool {
        for _ in 0..<64 {
            guard let exit = runOnce() else { return false }
            if case .interrupted = exit { return true }
            guard handle(exit) else { return false }
        }
        return true
    }

    /// Handles one exit; false when the vCPU must stop.
    private func handle(_ exit: VCPUExit?) -> Bool {
        guard let exit else { return false }
        let power = dispatcher.power
        switch exit {
        case .portIO(let port, let size, let count, let isWrite, let data):
            dispatcher.handlePortIO(vcpu: vcpu.index, port: port, size: size, count: count, isWrite: isWrite, data: data)
        case .mmio(let address, let length, let isWrite, let data):
            dispatcher.handleMMIO(address: address, length: length, isWrite: isWrite, data: data)
        case .interrupted, .halt:
            break
        case .shutdown:
            power.requestPowerOff(.reset)
        case .systemEvent(let type):
            switch type {
            case 1: power.requestPowerOff(.guestPoweredOff(status: 0))
            case 2: power.requestPowerOff(.reset)
            default: power.requestPowerOff(.vcpuFailure(vcpu: vcpu.index, description: "system event \(type)"))
            }
        case .failure(let description):
            power.requestPowerOff(.vcpuFailure(vcpu: vcpu.index, description: "\(description) \(stateSummary)"))
        }
        return true
    }
}
