// vmx: the VMM process of one VM run by the host agent (docs/AGENT.md). The agent starts it with
// `vmx --socket PATH`, connects to PATH, and drives it over the control protocol
// (docs/VMX-PROTOCOL.md). It never opens the volume: its disks are served by the agent.
import VMXRuntime
#if canImport(Glibc)
import Glibc
#endif

let version = "vmx 1.0"

func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, arguments[1] == "--socket", !arguments[2].isEmpty else {
    let usage = "usage: vmx --socket PATH\n  Runs one VM for the host agent, which connects to the control socket PATH.\n"
    printError(usage)
    exit(2)
}
signal(SIGPIPE, SIG_IGN)
do {
    let server = try VMXServer(socketPath: arguments[2], version: version)
    exit(server.run())
} catch {
    printError("vmx: \(error)\n")
    exit(1)
}
