internal import SystemSupport

/// Register offsets of the legacy (0.9.5) virtio-pci I/O BAR (`<linux/virtio_pci.h>`).
enum VirtioPCILegacyRegister {
    static let hostFeatures: UInt16 = 0
    static let guestFeatures: UInt16 = 4
    static let queuePFN: UInt16 = 8
    static let queueSize: UInt16 = 12
    static let queueSelect: UInt16 = 14
    static let queueNotify: UInt16 = 16
    static let status: UInt16 = 18
    static let isr: UInt16 = 19
    /// Device-specific configuration starts here when MSI-X is off.
    static let deviceConfiguration: UInt16 = 20
}

/// A transitional virtio device on PCI using the legacy register block in I/O BAR0, with INTx
/// (pin A) wired to an IOAPIC input.
///
/// A queue notification takes the available chains off the ring on the notifying vCPU (bounded
/// work: reading ring entries) and hands each to the VM's I/O threads, so the vCPU is back in the
/// guest at once however long the backend takes. Each completion goes into the used ring under
/// the device lock and raises the level-triggered line until the guest reads ISR. A device reset
/// waits until every request in flight has completed, so nothing is written into a ring the
/// driver has given up.
///
/// A device may serve some queues itself (virtio-net's receive queue waits for frames): a notify of
/// such a queue only wakes the device, which takes and returns chains through
/// ``VirtioQueueTransport``; a reset first asks the device to ``VirtioDeviceModel/quiesce()``.
final class VirtioPCILegacyDevice: PCIFunction, VirtioQueueTransport {
    /// Size of I/O BAR0.
    static let barSize: UInt32 = 0x100

    struct QueueState {
        var pfn: UInt32 = 0
        var queue: SplitVirtqueue?
    }

    struct State {
        var configuration: PCIConfigurationSpace
        var guestFeatures: UInt32 = 0
        var queueSelect: UInt16 = 0
        var status: UInt8 = 0
        var isr: UInt8 = 0
        var queues: [QueueState]
        var lastViolation: VirtqueueViolation?
        /// Requests handed to the I/O threads and not yet completed.
        var inFlight = 0
    }

    /// A request taken off a ring, for the I/O threads.
    private struct Submission: Sendable {
        var queue: Int
        var chain: AvailableChain
    }

    let model: any VirtioDeviceModel
    let memory: GuestMemory
    let interrupt: any InterruptLine
    let state: Monitor<State>
    private let io: WorkerPool

    /// - Parameters:
    ///   - ioBase: The I/O port BAR0 is pre-assigned to.
    ///   - interruptLine: The GSI (IOAPIC pin) INTA is routed to, reported in the Interrupt Line register.
    init(model: any VirtioDeviceModel, memory: GuestMemory, ioBase: UInt16, interruptLine: UInt8,
         interrupt: any InterruptLine, io: WorkerPool) {
        self.model = model
        self.memory = memory
        self.interrupt = interrupt
        self.io = io
        var space = PCIConfigurationSpace(
            vendorID: 0x1AF4, deviceID: model.transitionalPCIDeviceID, revision: 0, classCode: model.pciClassCode,
            subsystemVendorID: 0x1AF4, subsystemID: model.deviceType,
            bars: [PCIBar(kind: .io, size: Self.barSize)], interruptPin: 1, interruptLine: interruptLine)
        space.assignBar(0, address: UInt32(ioBase))
        space.enable(command: 0x1)
        state = Monitor(State(configuration: space, queues: model.queueSizes.map { _ in QueueState() }))
        model.attach(self)
    }

    /// Waits until no request is in flight (before saving state); false if `deadline` passed first.
    func drain(deadline: UInt64?) -> Bool {
        state.wait(until: deadline, for: { $0.inFlight == 0 }) { _ in true } ?? false
    }

    /// The device status register (tests check NEEDS_RESET).
    var deviceStatus: UInt8 { state.withLock { $0.status } }
    /// The last ring violation that put the device into NEEDS_RESET.
    var lastViolation: VirtqueueViolation? { state.withLock { $0.lastViolation } }

    // MARK: PCI configuration

    func readConfiguration(offset: Int, size: Int) -> UInt32 {
        state.withLock { $0.configuration.read(offset: offset, size: size) }
    }

    func writeConfiguration(offset: Int, size: Int, value: UInt32) {
        state.withLock { $0.configuration.write(offset: offset, size: size, value: value) }
    }

    // MARK: I/O BAR

    func readIO(port: UInt16, size: Int) -> UInt32? {
        var lower = false
        let value = state.withLock { s -> UInt32? in
            guard let offset = s.configuration.ioOffset(of: port, inBar: 0) else { return nil }
            return readRegister(&s, offset: offset, size: size, lowerInterrupt: &lower)
        }
        if lower { interrupt.setLevel(false) }
        return value
    }

    func writeIO(port: UInt16, size: Int, value: UInt32) -> Bool {
        var raise = false
        var lower = false
        var submissions: [Submission] = []
        var notified: Int?
        var statusChange: (status: UInt8, features: UInt32)?
        let offset = state.withLock { $0.configuration.ioOffset(of: port, inBar: 0) }
        guard let offset else { return false }
        typealias R = VirtioPCILegacyRegister
        if offset == R.status && UInt8(truncatingIfNeeded: value) == 0 {
            // Reset: the device's own queue work stops, requests in flight finish writing into the
            // rings, then the state goes.
            model.quiesce()
            _ = state.wait(for: { $0.inFlight == 0 }) { s in
                reset(&s)
                lower = true
            }
            statusChange = (0, 0)
        } else if offset >= R.deviceConfiguration {
            let bytes = (0..<min(size, 4)).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) }
            model.writeConfiguration(offset: Int(offset - R.deviceConfiguration), bytes: bytes)
        } else {
            state.withLock { s in
                if offset == R.queueNotify, model.servesQueueItself(Int(UInt16(truncatingIfNeeded: value))) {
                    notified = Int(UInt16(truncatingIfNeeded: value))
                    return
                }
                writeRegister(&s, offset: offset, size: size, value: value, raise: &raise, lower: &lower,
                              submissions: &submissions)
                if offset == R.status { statusChange = (s.status, s.guestFeatures) }
            }
        }
        if lower { interrupt.setLevel(false) }
        if raise { interrupt.setLevel(true) }
        if let notified { model.queueNotified(notified) }
        if let statusChange { model.driverStatusChanged(statusChange.status, negotiatedFeatures: statusChange.features) }
        for submission in submissions {
            io.submit { [self] in execute(submission) }
        }
        return true
    }

    // MARK: Queues the device serves itself

    func takeAvailable(queue index: Int, limit: Int) -> [AvailableChain] {
        var raise = false
        let chains = state.withLock { s -> [AvailableChain] in
            guard s.status & VirtioStatus.driverOK != 0, s.status & VirtioStatus.needsReset == 0,
                  s.queues.indices.contains(index), var queue = s.queues[index].queue else { return [] }
            defer { s.queues[index].queue = queue }
            var taken: [AvailableChain] = []
            while taken.count < limit {
                let next: AvailableChain?
                do throws(VirtqueueViolation) { next = try queue.nextAvailable(memory: memory) } catch {
                    markBroken(&s, error, raise: &raise)
                    break
                }
                guard let next else { break }
                taken.append(next)
            }
            return taken
        }
        if raise { interrupt.setLevel(true) }
        return chains
    }

    func complete(queue index: Int, _ used: [(head: UInt16, written: UInt32)]) {
        guard !used.isEmpty else { return }
        var raise = false
        state.withLock { s in
            guard s.queues.indices.contains(index), var queue = s.queues[index].queue else { return }
            for entry in used { queue.complete(head: entry.head, writtenLength: entry.written, memory: memory) }
            s.queues[index].queue = queue
            if queue.driverWantsInterrupt(memory: memory) {
                s.isr |= 0x1
                raise = true
            }
        }
        if raise { interrupt.setLevel(true) }
    }

    func signalConfigurationChange() {
        let raise = state.withLock { s -> Bool in
            guard s.status & VirtioStatus.driverOK != 0 else { return false }
            s.isr |= 0x2
            return true
        }
        if raise { interrupt.setLevel(true) }
    }

    private func readRegister(_ s: inout State, offset: UInt16, size: Int, lowerInterrupt: inout Bool) -> UInt32 {
        typealias R = VirtioPCILegacyRegister
        switch offset {
        case R.hostFeatures: return model.offeredFeatures
        case R.guestFeatures: return s.guestFeatures
        case R.queuePFN: return s.queues.indices.contains(Int(s.queueSelect)) ? s.queues[Int(s.queueSelect)].pfn : 0
        case R.queueSize:
            return s.queues.indices.contains(Int(s.queueSelect)) ? UInt32(model.queueSizes[Int(s.queueSelect)]) : 0
        case R.queueSelect: return UInt32(s.queueSelect)
        case R.status: return UInt32(s.status)
        case R.isr:
            let value = s.isr
            s.isr = 0
            lowerInterrupt = value != 0
            return UInt32(value)
        default:
            guard offset >= R.deviceConfiguration else { return allOnes(size: size) }
            let configuration = model.configurationBytes
            let start = Int(offset - R.deviceConfiguration)
            guard start + size <= configuration.count else { return allOnes(size: size) }
            return (0..<size).reduce(UInt32(0)) { $0 | UInt32(configuration[start + $1]) << (8 * UInt32($1)) }
        }
    }

    private func writeRegister(_ s: inout State, offset: UInt16, size: Int, value: UInt32,
                               raise: inout Bool, lower: inout Bool, submissions: inout [Submission]) {
        typealias R = VirtioPCILegacyRegister
        switch offset {
        case R.guestFeatures:
            s.guestFeatures = value & model.offeredFeatures
        case R.queuePFN:
            let index = Int(s.queueSelect)
            guard s.queues.indices.contains(index) else { return }
            s.queues[index].pfn = value
            if value == 0 {
                s.queues[index].queue = nil
                return
            }
            do {
                s.queues[index].queue = try SplitVirtqueue(
                    size: model.queueSizes[index], address: UInt64(value) << 12, memory: memory)
            } catch {
                s.queues[index].queue = nil
                markBroken(&s, error, raise: &raise)
            }
        case R.queueSelect:
            s.queueSelect = UInt16(truncatingIfNeeded: value)
        case R.queueNotify:
            take(&s, queue: Int(UInt16(truncatingIfNeeded: value)), raise: &raise, submissions: &submissions)
        case R.status:
            // NEEDS_RESET is device-owned: the driver cannot clear it except by reset (status 0,
            // handled by the caller once requests in flight have completed).
            s.status = UInt8(truncatingIfNeeded: value) | (s.status & VirtioStatus.needsReset)
        default:
            break  // read-only registers (device configuration writes go to the model)
        }
    }

    private func reset(_ s: inout State) {
        s.guestFeatures = 0
        s.queueSelect = 0
        s.status = 0
        s.isr = 0
        s.lastViolation = nil
        s.queues = model.queueSizes.map { _ in QueueState() }
    }

    private func markBroken(_ s: inout State, _ violation: VirtqueueViolation, raise: inout Bool) {
        s.status |= VirtioStatus.needsReset
        s.lastViolation = violation
        s.isr |= 0x2  // configuration change
        raise = true
    }

    /// Takes every available chain of queue `index` off the ring for the I/O threads.
    private func take(_ s: inout State, queue index: Int, raise: inout Bool, submissions: inout [Submission]) {
        guard s.status & VirtioStatus.driverOK != 0, s.status & VirtioStatus.needsReset == 0,
              s.queues.indices.contains(index), var queue = s.queues[index].queue else { return }
        defer { s.queues[index].queue = queue }
        // At most one queue's worth per notify: another vCPU that keeps making requests available
        // cannot hold this vCPU (and the device lock) forever. What it adds later comes with its own notify.
        var taken = 0
        while taken < Int(queue.size) {
            let next: AvailableChain?
            do {
                next = try queue.nextAvailable(memory: memory)
            } catch {
                markBroken(&s, error, raise: &raise)
                break
            }
            guard let next else { break }
            submissions.append(Submission(queue: index, chain: next))
            s.inFlight += 1
            taken += 1
        }
    }

    /// Runs one request on an I/O thread and returns it to the driver.
    private func execute(_ submission: Submission) {
        let head: UInt16
        let written: UInt32
        switch submission.chain {
        case .chain(let chain):
            let features = state.withLock { $0.guestFeatures }
            head = chain.head
            written = model.handle(chain, queue: submission.queue, memory: memory, negotiatedFeatures: features)
        case .malformed(let badHead, let violation):
            head = badHead
            written = model.handleMalformed(head: badHead, violation: violation, queue: submission.queue)
        }
        var raise = false
        state.withLock { s in
            s.inFlight -= 1
            guard s.queues.indices.contains(submission.queue), var queue = s.queues[submission.queue].queue else { return }
            queue.complete(head: head, writtenLength: written, memory: memory)
            s.queues[submission.queue].queue = queue
            if queue.driverWantsInterrupt(memory: memory) {
                s.isr |= 0x1
                raise = true
            }
        }
        if raise { interrupt.setLevel(true) }
    }
}
