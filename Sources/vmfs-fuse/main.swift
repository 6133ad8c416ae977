// vmfs-fuse: mounts a VMFS volume through FUSE (libfuse3 low-level API). See docs/FUSE.md.
internal import CFuse
#if canImport(Glibc)
internal import Glibc
#endif

/// The program version shown by `--version`.
let version = "1.0"

private func workingDirectory() -> String {
    guard let path = getcwd(nil, 0) else { return "/" }
    defer { free(path) }
    return String(cString: path)
}

let arguments = Array(CommandLine.arguments.dropFirst())
let invocation: Invocation
do {
    invocation = try CommandLineParser.parse(arguments, workingDirectory: workingDirectory())
} catch {
    Log.error("\(error.message) (see vmfs-fuse --help)")
    exit(2)
}

switch invocation {
case .help:
    print(CommandLineParser.usage)
    exit(0)
case .version:
    print("vmfs-fuse \(version) (libfuse \(String(cString: fuse_pkgversion())))")
    exit(0)
case .mount(let configuration):
    if !configuration.foreground && configuration.readyDescriptor == nil {
        exit(Launcher.runDetached(arguments: arguments))
    }
    exit(Daemon.run(configuration))
}
