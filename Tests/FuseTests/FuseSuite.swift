import Testing

/// Every FUSE test: real vmfs-fuse daemons mounting real volumes, one suite at a time (they
/// move gigabytes and run several daemons each; side by side they would only compete for the
/// two cores and the disk).
@Suite("vmfs-fuse", .serialized, .enabled(if: Environment.canMountFUSE, Environment.skipReason))
struct FuseSuite {}
