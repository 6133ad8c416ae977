#if canImport(Glibc)
import Glibc
#endif

/// Seed corpora are made by the harnesses themselves, from the same code that builds their
/// inputs: `VMFS_FUZZ_WRITE_SEEDS=DIR fuzz-NAME` writes the target's seeds into DIR and exits
/// (`Tools/scripts/fuzz.sh seeds` regenerates every committed corpus this way).
public enum SeedFiles {
    /// Writes `make()`'s seeds and exits when `VMFS_FUZZ_WRITE_SEEDS` names a directory; else does nothing.
    public static func writeIfAsked(_ make: () -> [(name: String, bytes: [UInt8])]) {
        guard let raw = getenv("VMFS_FUZZ_WRITE_SEEDS") else { return }
        let directory = String(cString: raw)
        mkdir(directory, 0o755)
        for seed in make() {
            let path = "\(directory)/\(seed.name)"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { fatalError("cannot write \(path): errno \(errno)") }
            let written = seed.bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard written == seed.bytes.count else { fatalError("cannot write \(path): errno \(errno)") }
        }
        exit(0)
    }
}
