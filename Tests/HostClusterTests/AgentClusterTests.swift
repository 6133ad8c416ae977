import Foundation
import Testing
import VMFSCore
import VMFSTestSupport

/// Three hosts, each in its own network namespace running vmhostd with its own identity, sharing
/// one image-file volume, driven through their APIs.
@Suite("Host agents in network namespaces", .serialized, .enabled(if: canRunCluster))
struct AgentClusterTests {
    /// vmctl in another namespace creates and powers on a VM through h1's remote API (TLS, token);
    /// h2 cannot run the same VM while h1 does (refused naming h1), and can once h1 powered it off.
    @Test func remoteAPIRunsAVMThatNoOtherHostCanRunAtTheSameTime() throws {
        let cluster = try TestCluster(hosts: 3)
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        let remote = ["--host", h1.url, "--token", h1.token, "--ca", h1.certificatePath]
        let vmctl = toolsDirectory.appendingPathComponent("vmctl").path
        let created = try cluster.lab.run(in: cluster.client(), [vmctl, "create", "--datastore", "ds1", "--name", "web",
                                                                 "--guest", try testGuestImage(), "--workload", "diskSequence",
                                                                 "--args", "1024,1,0,200000", "--disk", "64M", "--memory", "64M"] + remote)
        #expect(created.status == 0, "\(created.output)")
        let on = try cluster.lab.run(in: cluster.client(), [vmctl, "power-on", "web"] + remote)
        #expect(on.status == 0, "\(on.output)")
        #expect(powerState(h1, "web") == "running")

        // h2 registers the same VM from the shared volume; powering it on there is refused.
        let registered = try h2.local("POST", "/v1/vms/register", json: #"{"volume":"ds1","name":"web"}"#)
        #expect(registered.stdout.contains("\"web\""), "\(registered.output)")
        let refused = try h2.vmctl(["power-on", "web"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("locked") && refused.stderr.contains(h1.name), "\(refused.stderr)")
        #expect(powerState(h2, "web") == "poweredOff")

        // Once h1 powered it off, h2 runs it.
        #expect(try h1.vmctl(["power-off", "web"]).status == 0)
        let moved = try h2.vmctl(["power-on", "web"])
        #expect(moved.status == 0, "\(moved.output)")
        #expect(powerState(h2, "web") == "running")
        #expect(try eventually { (try sequenceLog(h2, file: "web-flat.vmdk")?.boots ?? 0) == 2 })
        #expect(try h2.vmctl(["power-off", "web"]).status == 0)
        let log = try #require(try sequenceLog(h2, file: "web-flat.vmdk"))
        #expect(log.problems.isEmpty, "\(log.problems)")
    }

    /// The TCP listener refuses requests without or with a wrong token (401); the local socket is
    /// not reachable by an unprivileged user.
    @Test func credentialsAreRequiredAndTheLocalSocketIsRootOnly() throws {
        let cluster = try TestCluster(hosts: 1)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        func status(_ extra: [String]) throws -> String {
            try cluster.lab.run(in: cluster.client(), ["/usr/bin/curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"]
                                + extra + ["\(h1.url)/v1/vms"]).stdout
        }
        #expect(try status([]) == "401")
        #expect(try status(["-H", "Authorization: Bearer wrong-token-0123456789"]) == "401")
        #expect(try status(["-H", "Authorization: Basic \(Data("root:\(h1.token)".utf8).base64EncodedString())"]) == "401")
        #expect(try status(["-H", "Authorization: Bearer \(h1.token)"]) == "200")
        let nobody = try runSystem("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/curl", "-s",
                                                       "--max-time", "10", "--unix-socket", h1.socketPath, "http://agent/v1/vms"])
        #expect(nobody.status != 0 && !nobody.stdout.contains("["), "an unprivileged user reached the local API: \(nobody.output)")
        #expect(try h1.local("GET", "/v1/vms").status == 0)
    }

    /// A VMM killed with SIGKILL is reaped: its VM is marked crashed, its locks are freed, an
    /// event says so, and the VM powers on again.
    @Test func aKilledVMMIsReapedAndItsVMRunsAgain() throws {
        let cluster = try TestCluster(hosts: 1)
        try cluster.startAll()
        let h1 = cluster.hosts[0]
        #expect(try h1.vmctl(["create", "--datastore", "ds1", "--name", "db", "--guest", try testGuestImage(), "--workload", "diskSequence",
                              "--args", "1024,1,0,200000", "--disk", "64M", "--memory", "64M"]).status == 0)
        #expect(try h1.vmctl(["power-on", "db"]).status == 0)
        // The guest's first boot record must be on disk before the kill, or the second power-on is its first boot.
        #expect(try eventually { (try sequenceLog(h1, file: "db-flat.vmdk")?.boots ?? 0) == 1 })
        let pid = try #require(h1.vmmPIDs.first)
        kill(pid, SIGKILL)
        #expect(eventually { powerState(h1, "db") == "crashed" })
        let events = try h1.local("GET", "/v1/events").stdout
        #expect(events.contains("vmCrashed") && events.contains("killed by signal 9"), "\(events)")
        let again = try h1.vmctl(["power-on", "db"])
        #expect(again.status == 0, "\(again.output)")
        #expect(powerState(h1, "db") == "running")
        #expect(try eventually { (try sequenceLog(h1, file: "db-flat.vmdk")?.boots ?? 0) == 2 })
        #expect(try h1.vmctl(["power-off", "db"]).status == 0)
        let log = try #require(try sequenceLog(h1, file: "db-flat.vmdk"))
        #expect(log.problems.isEmpty, "\(log.problems)")
    }
}

@Suite("Host agent: local users of the volume", .serialized, .enabled(if: canRunCluster))
struct AgentLocalUsersTests {
    /// With VMs running on h1, the volume is FUSE-mounted there and `vmfs ls`/`vmfs put` are used
    /// there: everything goes through h1's agent (one membership), nobody is told the host
    /// "already has the volume mounted", and a running VM's disk cannot be written through FUSE.
    @Test func fuseMountAndCommandsShareTheAgentsMembershipWhileVMsRun() throws {
        let cluster = try TestCluster(hosts: 2)
        try cluster.startAll()
        let (h1, h2) = (cluster.hosts[0], cluster.hosts[1])
        let image = try #require(cluster.images["ds1"])
        #expect(try h1.vmctl(["create", "--datastore", "ds1", "--name", "app", "--guest", try testGuestImage(), "--workload", "diskSequence",
                              "--args", "1024,1,0,200000", "--disk", "64M", "--memory", "64M"]).status == 0)
        #expect(try h1.vmctl(["power-on", "app"]).status == 0)
        let mountpoint = cluster.directory.appendingPathComponent("mnt").path
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let mounted = try runTool("vmfs-fuse", ["-o", "host_id=\(h1.name)", image, mountpoint], timeout: 60)
        #expect(mounted.status == 0, "\(mounted.output)")
        #expect(mounted.stdout.contains("host agent"), "\(mounted.output)")
        defer { _ = try? runSystem("/usr/bin/umount", [mountpoint]) }
        let names = try FileManager.default.contentsOfDirectory(atPath: mountpoint)
        #expect(Set(["app.vmx", "app.log", "app-flat.vmdk", "guest.elf"]).isSubset(of: Set(names)), "\(names)")
        #expect(try String(contentsOfFile: "\(mountpoint)/app.log", encoding: .utf8).contains("sequence: boot 1"))
        // The running VM's disk cannot be opened for writing through the mount.
        let disk = open("\(mountpoint)/app-flat.vmdk", O_WRONLY)
        let error = errno
        if disk >= 0 { close(disk) }
        #expect(disk < 0 && error == EBUSY, "opening a running VM's disk for writing gave \(disk < 0 ? String(cString: strerror(error)) : "a descriptor")")

        // vmfs commands on this host go through the agent too.
        let local = cluster.directory.appendingPathComponent("notes.txt").path
        try "notes from the administrator\n".write(toFile: local, atomically: true, encoding: .utf8)
        let put = try runTool("vmfs", ["put", "--host-id", h1.name, image, local, "notes.txt"], timeout: 60)
        #expect(put.status == 0, "\(put.output)")
        #expect(!put.output.contains("already has"), "\(put.output)")
        #expect(eventually(seconds: 5) { (try? String(contentsOfFile: "\(mountpoint)/notes.txt", encoding: .utf8)) == "notes from the administrator\n" })
        let listed = try runTool("vmfs", ["ls", image], timeout: 60)
        #expect(listed.stdout.contains("notes.txt") && listed.stdout.contains("app.vmx"), "\(listed.output)")
        try "written through FUSE\n".write(toFile: "\(mountpoint)/fuse.txt", atomically: false, encoding: .utf8)
        #expect(try h2.local("GET", "/v1/volumes/ds1/files").stdout.contains("fuse.txt"))
        let got = cluster.directory.appendingPathComponent("fuse-copy.txt").path
        #expect(try runTool("vmfs", ["get", "--host-id", h1.name, image, "fuse.txt", got], timeout: 60).status == 0)
        #expect(try String(contentsOfFile: got, encoding: .utf8) == "written through FUSE\n")

        #expect(try runSystem("/usr/bin/umount", [mountpoint]).status == 0)
        #expect(eventually(seconds: 5) { !(((try? h1.local("GET", "/v1/volumes/ds1/mounts").stdout) ?? "").contains("mnt")) })
        #expect(try h1.vmctl(["power-off", "app"]).status == 0)
        let log = try #require(try sequenceLog(h1, file: "app-flat.vmdk"))
        #expect(log.problems.isEmpty && log.boots == 1, "\(log.problems)")
    }
}
