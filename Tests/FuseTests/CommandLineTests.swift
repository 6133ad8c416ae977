import Testing
import VMFSCore
@testable import VMFSFuse

/// The daemon's command line, parsed without mounting anything (no root needed).
@Suite("vmfs-fuse command line")
struct CommandLineTests {
    private func parse(_ arguments: [String]) throws -> Configuration {
        guard case .mount(let configuration) = try CommandLineParser.parse(arguments, workingDirectory: "/work") else {
            throw UsageError("not a mount")
        }
        return configuration
    }

    @Test("options before or after the operands, -o lists, --host-id, relative paths")
    func basics() throws {
        let configuration = try parse(["-f", "disk.img", "mnt/", "-o", "host_id=esx01,allow_other", "-o", "lock_wait_ms=250"])
        #expect(configuration.device == "/work/disk.img")
        #expect(configuration.mountpoint == "/work/mnt")
        #expect(configuration.foreground)
        #expect(configuration.hostID == "esx01")
        #expect(configuration.lockWaitMs == 250)
        #expect(configuration.fuseOptions.contains("allow_other"))
        #expect(configuration.fuseOptions.contains("default_permissions"))
        #expect(configuration.fuseOptions.contains("subtype=vmfs"))
        #expect(configuration.fuseOptions.contains("fsname=/work/disk.img"))
        #expect(configuration.fuseOptions.contains("max_read=1048576"))
        #expect(try parse(["--host-id", "h2", "/dev/loop0", "/mnt"]).hostID == "h2")
        #expect(try parse(["--host-id=h3", "/dev/loop0", "/mnt"]).hostID == "h3")
    }

    @Test("what mount(8) passes: noise ignored, ro honoured, fsname escaped")
    func mountHelperArguments() throws {
        let configuration = try parse(["/a,b.img", "/mnt", "-o", "rw,noauto,nofail,_netdev,x-systemd.automount,comment=x,ro,host_id=h"])
        #expect(configuration.readOnly)
        #expect(configuration.mountOptions.readOnly)
        #expect(configuration.fuseOptions.contains("ro"))
        #expect(!configuration.fuseOptions.contains("noauto"))
        #expect(configuration.fuseOptions.contains("fsname=/a\\,b.img"))
        #expect(!configuration.foreground, "mount(8) gets a daemon that detaches")
    }

    @Test("hidden timing options go together, as options or -o")
    func timing() throws {
        let configuration = try parse(["--heartbeat-ms", "100", "--dead-ms=800", "-o", "io_timeout_ms=300", "d", "m"])
        #expect(configuration.mountOptions.timing == HeartbeatTiming(renewIntervalMs: 100, deadIntervalMs: 800, ioTimeoutMs: 300))
        #expect(throws: UsageError.self) { try parse(["--heartbeat-ms", "100", "d", "m"]) }
    }

    @Test("caching and transfer options")
    func caching() throws {
        let defaults = try parse(["d", "m"])
        #expect(defaults.writebackCache && !defaults.spliceReads && defaults.readAheadKiB == 1024 && defaults.maxTransfer == 1 << 20)
        let tuned = try parse(["-o", "no_writeback_cache,splice_read,read_ahead_kb=0,max_read=65536,attr_timeout=0.5,max_threads=4", "d", "m"])
        #expect(!tuned.writebackCache && tuned.spliceReads && tuned.readAheadKiB == 0)
        #expect(tuned.maxTransfer == 65536 && tuned.fuseOptions.contains("max_read=65536"))
        #expect(tuned.lockedAttributeTimeout == 0.5 && tuned.maxThreads == 4)
    }

    @Test("bad command lines are refused with a reason", arguments: [
        (["d"], "missing operand"),
        (["a", "b", "c"], "too many operands"),
        (["-o", "frobnicate", "d", "m"], "unknown mount option 'frobnicate'"),
        (["--frobnicate", "d", "m"], "unknown option"),
        (["-o", "lock_wait_ms=soon", "d", "m"], "whole number"),
        (["-o", "max_threads=0", "d", "m"], "max_threads"),
        (["d", "m", "-o"], "needs a value"),
        (["-o", "allow_other,no_default_permissions", "d", "m"], "no_default_permissions is refused"),
    ])
    func refusals(arguments: [String], reason: String) {
        do {
            _ = try CommandLineParser.parse(arguments, workingDirectory: "/")
            Issue.record("\(arguments) was accepted")
        } catch {
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }

    @Test("--help and --version")
    func helpAndVersion() throws {
        #expect(try CommandLineParser.parse(["--help"], workingDirectory: "/") == .help)
        #expect(try CommandLineParser.parse(["-V"], workingDirectory: "/") == .version)
    }
}
