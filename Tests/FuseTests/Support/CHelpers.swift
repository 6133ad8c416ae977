import Foundation
import Synchronization

/// C programs under Tests/FuseTests/Helpers, compiled with the system compiler once per test run.
enum CHelpers {
    private static let built = Mutex<[String: String]>([:])
    private static let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("vmfs-fuse-helpers-\(getpid())").path

    /// Compiles `Helpers/<name>.c` (once) and returns the executable's path.
    static func executable(_ name: String, libraries: [String] = []) throws -> String {
        try built.withLock { built in
            if let path = built[name] { return path }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let source = Environment.packageRoot.appendingPathComponent("Tests/FuseTests/Helpers/\(name).c").path
            let output = directory + "/" + name
            guard let compiler = Environment.executable("cc") ?? Environment.executable("gcc") else {
                throw HarnessError("no C compiler (cc or gcc) to build \(name).c")
            }
            var flags = ["-O2", "-Wall", "-Werror", "-o", output, source]
            for library in libraries {
                let config = try run("/usr/bin/pkg-config", ["--cflags", "--libs", library])
                guard config.status == 0 else { throw HarnessError("pkg-config \(library): \(config)") }
                flags += config.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
            }
            let result = try run(compiler, flags)
            guard result.status == 0 else { throw HarnessError("compiling \(name).c failed: \(result)") }
            built[name] = output
            return output
        }
    }
}
