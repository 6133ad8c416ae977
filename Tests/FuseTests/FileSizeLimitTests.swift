import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension FuseSuite {
    /// The maximum file size (256 TiB) at the kernel boundary.
    @Suite("Writes past the maximum file size")
    struct FileSizeLimitTests {
        private static let maxFileSize: UInt64 = 1 << 48

        /// Runs the `sizelimit` helper on `name` in `host`; its answers by attempt.
        private func attempts(_ host: FuseMount, _ name: String) throws -> [String: String] {
            try Posix.writeFile(host.path("source"), patternBytes(4096, seed: 3))
            let helper = try CHelpers.executable("sizelimit")
            let result = try run(helper, [host.path(name), host.path("source"), "\(Self.maxFileSize)"])
            #expect(result.status == 0, "\(result)")
            var answers: [String: String] = [:]
            for line in result.stdout.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                if parts.count == 2 { answers[String(parts[0])] = String(parts[1]) }
            }
            return answers
        }

        @Test("without the writeback cache every write past 256 TiB fails at once with EFBIG")
        func withoutWritebackCache() throws {
            let volume = try TestVolume("size-limit", size: "2G")
            let host = try volume.mount("A", options: ["no_writeback_cache"])
            let answers = try attempts(host, "f")
            for attempt in ["ftruncate", "fallocate", "copy_file_range-max", "copy_file_range-2^63", "pwrite-direct",
                            "pwrite-max", "pwrite-2^62"] {
                #expect(answers[attempt] == "EFBIG", "\(attempt): \(answers)")
            }
            #expect(try Posix.stat(host.path("f")).st_size == 0)
            #expect(try host.unmount() == 0)
        }

        /// With the writeback cache the kernel takes a buffered write into its cache without
        /// asking the daemon (FUSE cannot tell it a maximum size); everything that reaches the
        /// daemon first fails at once, the refused write-back shows at fsync, and once the file
        /// is closed its size is the real one again.
        @Test("with the writeback cache: EFBIG at once for all but buffered writes, whose write-back fails")
        func withWritebackCache() throws {
            let volume = try TestVolume("size-limit-wb", size: "2G")
            let host = try volume.mount("A")
            let answers = try attempts(host, "f")
            for attempt in ["ftruncate", "fallocate", "copy_file_range-max", "copy_file_range-2^63", "pwrite-direct"] {
                #expect(answers[attempt] == "EFBIG", "\(attempt): \(answers)")
            }
            if answers["pwrite-max"]?.hasPrefix("ok") == true || answers["pwrite-2^62"]?.hasPrefix("ok") == true {
                #expect(answers["fsync"]?.hasPrefix("ok") == false, "a refused write-back must show at fsync: \(answers)")
            }
            #expect(try Posix.stat(host.path("f")).st_size == 0, "after close the kernel has the real size")
            #expect(try host.unmount() == 0)
        }
    }
}
