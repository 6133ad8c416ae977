internal import Synchronization
internal import SystemSupport

/// Saving and restoring the emulated devices' state. A restore applies guest-visible registers
/// through the same rules a guest's writes follow, so a state from the network cannot put a
/// device somewhere a guest could not.

extension Serial16550 {
    func savedState() -> SerialState {
        registers.withLock { r in
            SerialState(interruptEnable: r.interruptEnable, lineControl: r.lineControl, modemControl: r.modemControl, scratch: r.scratch,
                        divisorLow: r.divisorLow, divisorHigh: r.divisorHigh, fifoControl: r.fifoControl,
                        transmitInterruptPending: r.transmitInterruptPending, receive: r.receive, pendingOutput: r.output)
        }
    }

    func restore(_ state: SerialState) {
        registers.withLock { r in
            r.interruptEnable = state.interruptEnable & 0x0F
            r.lineControl = state.lineControl
            r.modemControl = state.modemControl & 0x1F
            r.scratch = state.scratch
            r.divisorLow = state.divisorLow
            r.divisorHigh = state.divisorHigh
            r.fifoControl = state.fifoControl
            r.transmitInterruptPending = state.transmitInterruptPending
            r.receive = Array(state.receive.prefix(Self.inputCapacity))
            r.output = Array(state.pendingOutput.prefix(Self.outputChunk))
        }
    }
}

extension I8042Controller {
    func savedState() -> KeyboardControllerState {
        state.withLock { s in KeyboardControllerState(commandByte: s.commandByte, pendingCommand: s.pendingCommand ?? 0, output: s.output) }
    }

    func restore(_ saved: KeyboardControllerState) {
        state.withLock { s in
            s.commandByte = saved.commandByte
            s.pendingCommand = [0x60, 0xD1, 0xD2, 0xD3, 0xD4].contains(saved.pendingCommand) ? saved.pendingCommand : nil
            s.output = Array(saved.output.prefix(Self.outputCapacity))
        }
    }
}

extension CMOSClock {
    func savedState() -> CMOSState {
        state.withLock { CMOSState(index: $0.index, storage: $0.storage) }
    }

    func restore(_ saved: CMOSState) {
        state.withLock { s in
            s.index = saved.index & 0x7F
            if saved.storage.count == s.storage.count { s.storage = saved.storage }
        }
    }
}

extension PCIRootBus {
    var savedAddressLatch: UInt32 { address.withLock { $0 } }
    func restore(addressLatch: UInt32) { address.withLock { $0 = addressLatch } }
}

extension VirtioPCILegacyDevice {
    /// The device's state; requests must have been drained (``drain(deadline:)``).
    func savedState() throws(HypervisorError) -> VirtioDeviceState {
        try state.withLock { (s) throws(HypervisorError) -> VirtioDeviceState in
            guard s.inFlight == 0 else {
                throw HypervisorError(.invalidState, "virtio device \(model.deviceType) still has \(s.inFlight) requests in flight")
            }
            return VirtioDeviceState(
                deviceType: model.deviceType, configurationSpace: s.configuration.bytes, guestFeatures: s.guestFeatures,
                queueSelect: s.queueSelect, status: s.status, isr: s.isr,
                queues: s.queues.map { q in
                    VirtioDeviceState.Queue(pfn: q.pfn, lastAvailableIndex: q.queue?.lastAvailableIndex ?? 0, usedIndex: q.queue?.usedIndex ?? 0)
                })
        }
    }

    /// Applies a saved state to a device that has not run. The configuration space's identity must
    /// be this device's; only the registers a guest can write are taken from it. A queue whose
    /// saved position does not fit in guest memory leaves the device in NEEDS_RESET, as the
    /// guest's own write would have.
    func restore(_ saved: VirtioDeviceState, name: String) throws(HypervisorError) {
        guard saved.deviceType == model.deviceType else {
            throw HypervisorError(.incompatibleState, "\(name) was a virtio device of type \(saved.deviceType); this one is type \(model.deviceType)")
        }
        guard saved.queues.count == model.queueSizes.count else {
            throw HypervisorError(.incompatibleState, "\(name) had \(saved.queues.count) queues; this device has \(model.queueSizes.count)")
        }
        guard saved.configurationSpace.count == PCIConfigurationSpace.size else {
            throw HypervisorError(.invalidSavedState, "\(name): configuration space of \(saved.configurationSpace.count) bytes")
        }
        let identity = state.withLock { Array($0.configuration.bytes[0..<4]) }
        guard Array(saved.configurationSpace[0..<4]) == identity else {
            throw HypervisorError(.incompatibleState, "\(name): the saved PCI vendor/device ID does not match this device")
        }
        let raise = state.withLock { s -> Bool in
            func dword(_ offset: Int) -> UInt32 {
                (0..<4).reduce(UInt32(0)) { $0 | UInt32(saved.configurationSpace[offset + $1]) << (8 * UInt32($1)) }
            }
            s.configuration.write(offset: 0x04, size: 2, value: dword(0x04) & 0xFFFF)
            s.configuration.write(offset: 0x0C, size: 1, value: dword(0x0C) & 0xFF)
            for bar in 0..<6 { s.configuration.write(offset: 0x10 + bar * 4, size: 4, value: dword(0x10 + bar * 4)) }
            s.configuration.write(offset: 0x3C, size: 1, value: dword(0x3C) & 0xFF)
            s.guestFeatures = saved.guestFeatures & model.offeredFeatures
            s.queueSelect = saved.queueSelect
            s.status = saved.status
            s.isr = saved.isr
            s.inFlight = 0
            for (index, queue) in saved.queues.enumerated() {
                s.queues[index].pfn = queue.pfn
                s.queues[index].queue = nil
                guard queue.pfn != 0 else { continue }
                do throws(VirtqueueViolation) {
                    var ring = try SplitVirtqueue(size: model.queueSizes[index], address: UInt64(queue.pfn) << 12, memory: memory)
                    ring.restorePositions(lastAvailable: queue.lastAvailableIndex, used: queue.usedIndex)
                    s.queues[index].queue = ring
                } catch {
                    s.status |= VirtioStatus.needsReset
                    s.lastViolation = error
                    s.isr |= 0x2
                }
            }
            return s.isr != 0
        }
        // A level-triggered line's level is the device's to drive; the in-kernel IOAPIC state does not keep it.
        interrupt.setLevel(raise)
    }
}
