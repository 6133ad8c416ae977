internal import CISCSI
import Synchronization

/// Lets ordinary commands run side by side and a reservation-protected sequence run alone.
final class CommandGate: Sendable {
    private struct State {
        var shared = 0
        var exclusive = false
        var waitingExclusive = 0
    }
    private let state = Monitor<State>(State())

    func shared<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        _ = state.wait(for: { !$0.exclusive && $0.waitingExclusive == 0 }) { $0.shared += 1 }
        defer { state.withLock { $0.shared -= 1 } }
        return try body()
    }

    func exclusive<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        state.withLock { $0.waitingExclusive += 1 }
        _ = state.wait(for: { !$0.exclusive && $0.shared == 0 }) { s in
            s.waitingExclusive -= 1
            s.exclusive = true
        }
        defer { state.withLock { $0.exclusive = false } }
        return try body()
    }
}

/// SCSI sense keys the engine acts on.
enum SenseKey {
    static let notReady: Int32 = 0x2
    static let illegalRequest: Int32 = 0x5
    static let unitAttention: Int32 = 0x6
    static let dataProtect: Int32 = 0x7
    static let abortedCommand: Int32 = 0xB
    static let miscompare: Int32 = 0xE
}

/// How the engine treats answers that are not GOOD.
struct CommandPolicy {
    /// Names the command in errors.
    var what: String
    /// The batch writes (RESERVATION CONFLICT then goes to the conflict handler).
    var isWrite = false
    /// A unit attention means the command did not run: retry it. False for commands under a
    /// SCSI-2 reservation, where a unit attention means a reset took the reservation away.
    var retryUnitAttention = true
    /// RESERVATION CONFLICT is an answer, not something to wait out (RESERVE, probes).
    var conflictIsAnswer = false
    /// A dropped connection is retried on a new one. False under a SCSI-2 reservation, which
    /// belongs to the old connection's I_T nexus.
    var retryConnection = true
    /// MISCOMPARE is an answer (COMPARE AND WRITE).
    var miscompareIsAnswer = false
    /// ILLEGAL REQUEST is an answer (probes).
    var illegalRequestIsAnswer = false
}

extension CommandPolicy {
    /// A command of a SCSI-2 reservation sequence: unit attentions, conflicts and dropped
    /// connections are answers for the sequence to act on, never retried here.
    static func reserved(_ what: String, isWrite: Bool) -> CommandPolicy {
        CommandPolicy(what: what, isWrite: isWrite, retryUnitAttention: false, conflictIsAnswer: true, retryConnection: false)
    }
}

extension ISCSIBlockDevice {
    /// Runs `commands` to completion: retries what meets a dropped connection (after logging in
    /// again), BUSY, or a passing unit attention, until the command timeout; waits out reservation
    /// conflicts (or asks the conflict handler for writes). Returns the final requests.
    ///
    /// - Throws: ``VMFSError`` naming the command, the portal and the sense data.
    func run(_ commands: [cvi_request], policy: CommandPolicy) throws(VMFSError) -> [cvi_request] {
        var results = commands
        var pending = Array(commands.indices)
        let timeout = UInt64(commandTimeoutMilliseconds) * 1_000_000
        let deadline = Clock.monotonicNanoseconds + timeout
        var pause: UInt64 = 500_000
        var lastProblem = ""
        while !pending.isEmpty {
            let now = Clock.monotonicNanoseconds
            guard now < deadline else {
                throw VMFSError(.timedOut, "\(policy.what) did not complete within \(timeout / 1_000_000) ms: \(lastProblem)",
                                location: .init(device: path))
            }
            try ensureConnected(deadline: deadline)
            var batch = pending.map { results[$0] }
            let left = Int32(clamping: (deadline - Clock.monotonicNanoseconds) / 1_000_000 + 1)
            batch.withUnsafeMutableBufferPointer { cvi_execute(session, $0.baseAddress, Int32($0.count), left) }
            var retry: [Int] = []
            var wait = false
            var conflicted = false
            for (position, index) in pending.enumerated() {
                let answer = batch[position]
                results[index] = answer
                switch Int(answer.result) {
                case Int(CVI_GOOD.rawValue):
                    continue
                case Int(CVI_CHECK_CONDITION.rawValue):
                    let sense = Self.describeSense(answer)
                    switch answer.sense_key {
                    case SenseKey.unitAttention:
                        unitAttentions.withLock { $0 += 1 }
                        guard policy.retryUnitAttention else {
                            throw VMFSError(.busy, "\(policy.what) got a unit attention (\(sense)): a reset or another initiator changed the LUN",
                                            location: .init(device: path))
                        }
                        lastProblem = "unit attention (\(sense))"
                        retry.append(index)
                    case SenseKey.miscompare where policy.miscompareIsAnswer:
                        continue
                    case SenseKey.illegalRequest where policy.illegalRequestIsAnswer:
                        continue
                    case SenseKey.notReady, SenseKey.abortedCommand:
                        lastProblem = sense
                        retry.append(index)
                        wait = true
                    case SenseKey.illegalRequest:
                        throw VMFSError(.unsupported, "\(policy.what) was refused by the target: \(sense)", location: .init(device: path))
                    case SenseKey.dataProtect:
                        throw VMFSError(.readOnly, "\(policy.what) was refused: the LUN is write-protected (\(sense))", location: .init(device: path))
                    default:
                        throw VMFSError(.io, "\(policy.what) failed: \(sense)", location: .init(device: path, offset: answer.lba &* UInt64(logicalBlockSize)))
                    }
                case Int(CVI_RESERVATION_CONFLICT.rawValue):
                    if policy.conflictIsAnswer { continue }
                    if policy.isWrite, let handler = conflictHandler.withLock({ $0 }) {
                        guard handler() else {
                            throw VMFSError(.fenced, "\(policy.what) got RESERVATION CONFLICT: this host's persistent-reservation key "
                                            + "was preempted (another host declared it dead)", location: .init(device: path))
                        }
                    } else {
                        conflicted = true
                    }
                    lastProblem = "RESERVATION CONFLICT (another initiator holds a reservation on the LUN)"
                    retry.append(index)
                case Int(CVI_BUSY.rawValue):
                    lastProblem = "the target was busy"
                    retry.append(index)
                    wait = true
                case Int(CVI_CONNECTION.rawValue), Int(CVI_TIMEOUT.rawValue):
                    guard policy.retryConnection else {
                        throw VMFSError(.io, "\(policy.what): the connection to \(address.portal) broke; it may or may not have run",
                                        location: .init(device: path))
                    }
                    lastProblem = answer.result == Int32(CVI_TIMEOUT.rawValue) ? "no answer (connection dropped)" : "the connection broke"
                    retry.append(index)
                default:
                    throw VMFSError(.io, "\(policy.what) could not be sent to \(address.portal) (status 0x\(String(answer.status, radix: 16)))",
                                    location: .init(device: path))
                }
            }
            pending = retry
            if wait && !pending.isEmpty {
                Clock.sleep(nanoseconds: pause)
                pause = min(pause * 2, 20_000_000)
            } else if conflicted && !pending.isEmpty {
                // Another host holds a SCSI-2 reservation for one short update: try again soon, or
                // the hosts that keep reserving would starve this command past its timeout.
                Clock.sleep(nanoseconds: UInt64.random(in: 100_000...600_000))
            }
        }
        return results
    }

    /// Logs in again when the connection is down, retrying until `deadline`.
    func ensureConnected(deadline: UInt64) throws(VMFSError) {
        var problem = ""
        while cvi_connected(session) == 0 {
            let now = Clock.monotonicNanoseconds
            guard now < deadline else {
                throw VMFSError(.io, "lost the connection to iSCSI portal \(address.portal) and could not log in again in time: \(problem)",
                                location: .init(device: path))
            }
            let epoch = cvi_epoch(session)
            var failure: Int32 = 0
            var message = [CChar](repeating: 0, count: 256)
            let left = Int32(clamping: max((deadline - now) / 1_000_000, 1))
            if cvi_reconnect(session, epoch, left, &failure, &message, message.count) == 0 { return }
            problem = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            Clock.sleep(milliseconds: 20)
        }
    }

    /// "sense key 0x6, ASC 0x29, ASCQ 0x00 (reset occurred)".
    static func describeSense(_ request: cvi_request) -> String {
        func hex(_ value: Int32) -> String { "0x" + String(value, radix: 16) }
        var text = "sense key \(hex(request.sense_key)), ASC \(hex(request.asc)), ASCQ \(hex(request.ascq))"
        switch (request.sense_key, request.asc) {
        case (SenseKey.unitAttention, 0x29): text += " (power on or reset occurred)"
        case (SenseKey.unitAttention, 0x2A): text += " (reservations or registrations changed)"
        case (SenseKey.illegalRequest, 0x20): text += " (invalid command operation code)"
        case (SenseKey.illegalRequest, 0x24): text += " (invalid field in CDB)"
        case (SenseKey.illegalRequest, 0x21): text += " (LBA out of range)"
        case (SenseKey.illegalRequest, 0x25): text += " (LUN not supported)"
        case (SenseKey.miscompare, _): text += " (miscompare)"
        default: break
        }
        return text
    }
}
