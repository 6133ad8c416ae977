import Testing
import VMFSTestSupport

/// Heartbeat timing of the iSCSI volumes in tests: renew 200 ms, dead 4 s, I/O timeout T 0.8 s
/// (a SCSI-2 reservation is broken after T/2 of conflicts, a Disk Paxos lease expires after 3T,
/// and a Disk Paxos slot claim needs D ≥ 3T + 2H).
let iscsiMkfsFlags = ["--heartbeat-interval", "200", "--dead-interval", "4000", "--io-timeout", "800"]

/// The iSCSI tests start their own targets (tgtd, istgt), which needs root.
func requireTarget() throws {
    guard isRoot, TgtTarget.isAvailable, IstgtTarget.isAvailable else {
        try Test.cancel("the iSCSI targets need root and the tgt and istgt packages (Tools/scripts/setup.sh)")
    }
}
