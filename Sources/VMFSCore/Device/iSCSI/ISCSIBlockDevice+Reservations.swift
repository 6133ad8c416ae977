internal import CISCSI

/// COMPARE AND WRITE, SCSI-2 RESERVE/RELEASE, LUN reset and SPC-3 persistent reservations.
extension ISCSIBlockDevice {
    private func command(_ op: cvi_op) -> cvi_request {
        var request = cvi_request()
        request.op = Int32(op.rawValue)
        return request
    }

    // MARK: ATS

    public func compareAndWrite(at offset: UInt64, expected: [UInt8], new: [UInt8]) throws(VMFSError) -> CompareAndWriteResult {
        precondition(expected.count == new.count && expected.count % logicalBlockSize == 0, "COMPARE AND WRITE works on whole blocks")
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path, offset: offset)) }
        let data = AlignedBuffer(copying: expected + new)
        var request = command(CVI_OP_COMPARE_AND_WRITE)
        request.lba = offset / UInt64(logicalBlockSize)
        request.blocks = UInt32(expected.count / logicalBlockSize)
        request.buffer = data.start
        request.length = UInt32(data.count)
        let answer = try data.withBytes { _ throws(VMFSError) -> cvi_request in
            try gate.shared { () throws(VMFSError) -> cvi_request in
                try run([request], policy: .init(what: "COMPARE AND WRITE", isWrite: true, miscompareIsAnswer: true))[0]
            }
        }
        if answer.result == Int32(CVI_GOOD.rawValue) { return .written }
        // A retried command (after a dropped connection) may find its own first attempt's data.
        let current = try read(count: new.count, at: offset)
        return current == new ? .written : .mismatch(current: current)
    }

    public func probeCompareAndWrite(at offset: UInt64) throws(VMFSError) -> SCSIProbe {
        let current = try read(count: logicalBlockSize, at: offset)
        let data = AlignedBuffer(copying: current + current)
        var request = command(CVI_OP_COMPARE_AND_WRITE)
        request.lba = offset / UInt64(logicalBlockSize)
        request.blocks = 1
        request.buffer = data.start
        request.length = UInt32(data.count)
        let answer = try data.withBytes { _ throws(VMFSError) -> cvi_request in
            try gate.shared { () throws(VMFSError) -> cvi_request in
                try run([request], policy: .init(what: "COMPARE AND WRITE (probe)", isWrite: true, miscompareIsAnswer: true,
                                                 illegalRequestIsAnswer: true))[0]
            }
        }
        switch answer.result {
        case Int32(CVI_GOOD.rawValue): return .supported
        case Int32(CVI_CHECK_CONDITION.rawValue) where answer.sense_key == SenseKey.miscompare:
            return .unsupported("the probe found other data than it had just read (\(Self.describeSense(answer)))")
        default: return .unsupported("the target refused COMPARE AND WRITE: \(Self.describeSense(answer))")
        }
    }

    // MARK: SCSI-2 reservations

    public func reserve() throws(VMFSError) -> Bool {
        // A unit attention or a dropped connection means nothing was reserved: retried here.
        let answer = try run([command(CVI_OP_RESERVE6)], policy: .init(what: "RESERVE(6)", conflictIsAnswer: true))[0]
        return answer.result == Int32(CVI_GOOD.rawValue)
    }

    public func release() throws(VMFSError) {
        _ = try run([command(CVI_OP_RELEASE6)], policy: .init(what: "RELEASE(6)", conflictIsAnswer: true))
    }

    public func resetLogicalUnit() throws(VMFSError) {
        let answer = try run([command(CVI_OP_LUN_RESET)], policy: .init(what: "LOGICAL UNIT RESET"))[0]
        guard answer.result == Int32(CVI_GOOD.rawValue) else {
            throw VMFSError(.io, "LOGICAL UNIT RESET was refused (response \(answer.status))", location: .init(device: path))
        }
    }

    public func readReserved(count: Int, at offset: UInt64) throws(VMFSError) -> [UInt8] {
        let buffer = AlignedBuffer(count: count, alignment: 4096, zeroed: false)
        var request = command(CVI_OP_READ)
        request.lba = offset / UInt64(logicalBlockSize)
        request.blocks = UInt32(count / logicalBlockSize)
        request.buffer = buffer.start
        request.length = UInt32(count)
        let answer = try buffer.withBytes { _ throws(VMFSError) in
            try run([request], policy: .reserved("READ(16) under reservation", isWrite: false))[0]
        }
        try requireReserved(answer, "READ(16)")
        return buffer.array
    }

    public func writeReserved(_ bytes: [UInt8], at offset: UInt64) throws(VMFSError) {
        guard !isReadOnly else { throw VMFSError(.readOnly, "device opened read-only", location: .init(device: path, offset: offset)) }
        let buffer = AlignedBuffer(copying: bytes)
        var request = command(CVI_OP_WRITE)
        request.lba = offset / UInt64(logicalBlockSize)
        request.blocks = UInt32(bytes.count / logicalBlockSize)
        request.buffer = buffer.start
        request.length = UInt32(bytes.count)
        let answer = try buffer.withBytes { _ throws(VMFSError) in
            try run([request], policy: .reserved("WRITE(16) under reservation", isWrite: true))[0]
        }
        try requireReserved(answer, "WRITE(16)")
    }

    private func requireReserved(_ answer: cvi_request, _ what: String) throws(VMFSError) {
        guard answer.result != Int32(CVI_RESERVATION_CONFLICT.rawValue) else {
            throw VMFSError(.busy, "\(what) got RESERVATION CONFLICT: this host's reservation is gone", location: .init(device: path))
        }
    }

    public func withExclusiveAccess<T>(_ body: () throws(VMFSError) -> T) throws(VMFSError) -> T {
        try gate.exclusive(body)
    }

    // MARK: Persistent reservations

    private func reserveIn(_ serviceAction: UInt8, what: String) throws(VMFSError) -> (answer: cvi_request, data: [UInt8]) {
        let buffer = AlignedBuffer(count: 8192)
        var request = command(CVI_OP_PR_IN)
        request.service_action = serviceAction
        request.buffer = buffer.start
        request.length = UInt32(buffer.count)
        // Persistent-reservation commands skip the command gate: the conflict handler issues them
        // from inside a batch that holds it.
        let answer = try run([request], policy: .init(what: what, illegalRequestIsAnswer: true))[0]
        return (answer, Array(buffer.bytes.prefix(Int(answer.received))))
    }

    public func probePersistentReservations() throws(VMFSError) -> SCSIProbe {
        let (answer, _) = try reserveIn(2, what: "PERSISTENT RESERVE IN (REPORT CAPABILITIES)")
        if answer.result == Int32(CVI_GOOD.rawValue) { return .supported }
        return .unsupported("the target refused PERSISTENT RESERVE IN: \(Self.describeSense(answer))")
    }

    private func reserveInData(_ serviceAction: UInt8, what: String) throws(VMFSError) -> [UInt8] {
        let (answer, data) = try reserveIn(serviceAction, what: what)
        guard answer.result == Int32(CVI_GOOD.rawValue) else {
            throw VMFSError(.unsupported, "\(what) was refused: \(Self.describeSense(answer))", location: .init(device: path))
        }
        return data
    }

    public func registeredKeys() throws(VMFSError) -> [UInt64] {
        let data = try reserveInData(0, what: "PERSISTENT RESERVE IN (READ KEYS)")
        guard data.count >= 8 else { return [] }
        let length = Int(Self.bigEndian32(data, 4))
        var keys: [UInt64] = []
        var offset = 8
        while offset + 8 <= min(data.count, 8 + length) {
            keys.append(Self.bigEndian64(data, offset))
            offset += 8
        }
        return keys
    }

    public func persistentReservation() throws(VMFSError) -> (key: UInt64, type: UInt8)? {
        let data = try reserveInData(1, what: "PERSISTENT RESERVE IN (READ RESERVATION)")
        guard data.count >= 22, Self.bigEndian32(data, 4) >= 16 else { return nil }
        return (Self.bigEndian64(data, 8), data[21] & 0x0F)
    }

    private func reserveOut(_ serviceAction: UInt8, type: UInt8 = 0, key: UInt64, serviceKey: UInt64, what: String) throws(VMFSError) -> cvi_request {
        var request = command(CVI_OP_PR_OUT)
        request.service_action = serviceAction
        request.pr_type = type
        request.key = key
        request.sa_key = serviceKey
        return try run([request], policy: .init(what: what, conflictIsAnswer: true))[0]
    }

    private func requireGood(_ answer: cvi_request, _ what: String) throws(VMFSError) {
        switch answer.result {
        case Int32(CVI_GOOD.rawValue): return
        case Int32(CVI_RESERVATION_CONFLICT.rawValue):
            throw VMFSError(.busy, "\(what) got RESERVATION CONFLICT", location: .init(device: path))
        default:
            throw VMFSError(.io, "\(what) failed: \(Self.describeSense(answer))", location: .init(device: path))
        }
    }

    public func register(key: UInt64) throws(VMFSError) {
        let what = "PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY 0x\(String(key, radix: 16)))"
        try requireGood(try reserveOut(6, key: 0, serviceKey: key, what: what), what)
    }

    public func unregister(key: UInt64) throws(VMFSError) {
        let what = "PERSISTENT RESERVE OUT (unregister 0x\(String(key, radix: 16)))"
        try requireGood(try reserveOut(0, key: key, serviceKey: 0, what: what), what)
    }

    /// WRITE EXCLUSIVE – REGISTRANTS ONLY: every registered initiator may write, others may not.
    /// Its holder is one registration with a visible key, and preempting that key moves the
    /// reservation to the preempter in the same command. (The all-registrants type would do as
    /// well by the standard, but tgt's PREEMPT frees the preempted registration even when it is the
    /// one its all-registrants reservation points to.)
    static let registrantsOnlyType: UInt8 = 5

    public func reserveForRegistrants(key: UInt64) throws(VMFSError) {
        if let held = try persistentReservation(), held.type == Self.registrantsOnlyType { return }
        let what = "PERSISTENT RESERVE OUT (RESERVE, WRITE EXCLUSIVE – REGISTRANTS ONLY)"
        let answer = try reserveOut(1, type: Self.registrantsOnlyType, key: key, serviceKey: 0, what: what)
        if answer.result == Int32(CVI_RESERVATION_CONFLICT.rawValue), let held = try persistentReservation(), held.type == Self.registrantsOnlyType {
            return  // another host made it first
        }
        try requireGood(answer, what)
    }

    public func preempt(victim: UInt64, using key: UInt64) throws(VMFSError) {
        guard try registeredKeys().contains(victim) else { return }
        let what = "PERSISTENT RESERVE OUT (PREEMPT 0x\(String(victim, radix: 16)))"
        let answer = try reserveOut(4, type: Self.registrantsOnlyType, key: key, serviceKey: victim, what: what)
        if answer.result == Int32(CVI_RESERVATION_CONFLICT.rawValue), try !registeredKeys().contains(victim) { return }
        try requireGood(answer, what)
    }

    public func clearPersistentReservations() throws(VMFSError) {
        guard case .supported = try probePersistentReservations() else { return }
        guard try !registeredKeys().isEmpty else { return }
        let key = UInt64.random(in: 1...UInt64.max)
        try register(key: key)
        let what = "PERSISTENT RESERVE OUT (CLEAR)"
        try requireGood(try reserveOut(3, key: key, serviceKey: 0, what: what), what)
    }

    public func renewNexus() throws(VMFSError) {
        try gate.exclusive { () throws(VMFSError) in
            cvi_disconnect(session)
            try ensureConnected(deadline: Clock.monotonicNanoseconds + UInt64(commandTimeoutMilliseconds) * 1_000_000)
        }
    }

    private static func bigEndian32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[offset + $1]) }
    }

    private static func bigEndian64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[offset + $1]) }
    }
}
