import Foundation
import Testing
@testable import VMFSCore
import VMFSTestSupport



/// Reads `count` bytes of a tgt LUN's backing file (what landed at the target).
private func backing(_ image: String, at offset: UInt64, count: Int) throws -> [UInt8] {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: image))
    defer { try? handle.close() }
    try handle.seek(toOffset: offset)
    return [UInt8](handle.readData(ofLength: count))
}

@Suite("iSCSI LUNs: persistent-reservation fencing, administration views, bad input", .serialized)
struct ISCSIFencingTests {
    /// The holder keeps writing straight to the LUN (as writes queued in its kernel or network
    /// would, past its own fencing). Frozen past D, it is declared dead and its key preempted by
    /// the survivor, which then unmounts; after resuming, the target refuses those writes and none
    /// reaches the backing file. (The survivor's unmount must not release the reservation.)
    @Test func frozenHostIsPreemptedAndItsQueuedWritesNeverLand() throws {
        try requireTarget()
        let tgt = try TgtTarget()
        let target = try tgt.addTarget(size: 4 << 30)
        let url = tgt.url(target)
        let made = try runTool("mkfs.vmfs", ["--journal-size", "1M", "--atomic-update", "paxos", "--fencing", "pr"] + iscsiMkfsFlags + [url])
        try #require(made.status == 0, "\(made.output)")
        #expect(made.stdout.contains("SPC-3 persistent reservations [pr]"), "\(made.stdout)")
        // A sector of the data area no file uses: the last MiB before the backup header.
        let rawOffset = ((4 << 30) - (2 << 20)) as UInt64
        let holder = try LiveProcess("vmfs-testhost", ["hold", url, "--host-id", "frozen", "--file", "vm.vmdk", "--create",
                                                       "--raw-write-offset", "\(rawOffset)"])
        try #require(holder.waitForLine(startingWith: "RAWOK 20", timeout: 120) != nil, "\(holder.output)")

        let hosts = try runTool("vmfs", ["hosts", url])
        #expect(hosts.stdout.contains("registered"), "\(hosts.output)")
        let info = try runTool("vmfs", ["info", url])
        #expect(info.stdout.contains("Disk Paxos [paxos]"), "\(info.output)")
        #expect(info.stdout.contains("target:     \(url)"), "\(info.output)")
        #expect(info.stdout.contains("WRITE EXCLUSIVE – REGISTRANTS ONLY"), "\(info.output)")

        holder.kill(SIGSTOP)
        let frozenAt = holder.output.count
        let landedBefore = try backing(target.images[0], at: rawOffset, count: 64)
        #expect(String(decoding: landedBefore, as: UTF8.self).hasPrefix("RAW frozen seq "))

        var options = MountOptions(host: HostIdentity.local(override: "survivor"))
        options.lockWaitMs = 30_000
        options.automaticRecovery = true
        let survivor = try Volume.mount(path: url, options: options)
        let handle = try survivor.open("vm.vmdk", access: .readWrite)
        let keys = try #require(survivor.device as? any SCSIStorage).registeredKeys()
        #expect(keys.count == 1, "only the survivor's key may stay registered: \(keys)")
        try handle.close()
        try survivor.unmount()

        holder.kill(SIGCONT)
        let refused = holder.waitForLine(startingWith: "RAWFAIL", timeout: 30)
        #expect(refused?.contains("RESERVATION CONFLICT") == true || refused?.contains("preempted") == true, "\(holder.output)")
        Thread.sleep(forTimeInterval: 1)
        let afterResume = holder.output.dropFirst(frozenAt)
        #expect(!afterResume.contains { $0.hasPrefix("RAWOK") || $0.hasPrefix("WROTE") }, "\(afterResume)")
        #expect(try backing(target.images[0], at: rawOffset, count: 64) == landedBefore, "a write of the fenced host landed")
        holder.kill(SIGKILL)
        holder.wait()
    }

    /// The target drops every connection between writes: each command is retried on a new
    /// connection within the I/O timeout, the data is intact, and the host stays a member.
    @Test func droppedConnectionsAreReconnectedWithinTheIOTimeout() throws {
        try requireTarget()
        let tgt = try TgtTarget()
        let target = try tgt.addTarget(size: 2 << 30)
        let url = tgt.url(target)
        let made = try runTool("mkfs.vmfs", ["--journal-size", "1M", "--atomic-update", "paxos"] + iscsiMkfsFlags + [url])
        try #require(made.status == 0, "\(made.output)")
        let volume = try Volume.mount(path: url, options: MountOptions(host: HostIdentity.local(override: "dropped")))
        let membership = volume.membership
        let file = try volume.create("data", access: .readWrite)
        var expected: [[UInt8]] = []
        for round in 0..<4 {
            try tgt.dropConnections(of: target)
            let bytes = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            try file.write(bytes: bytes, at: UInt64(round) << 20)
            try file.sync()
            expected.append(bytes)
        }
        try tgt.dropConnections(of: target)
        for (round, bytes) in expected.enumerated() {
            #expect(try file.read(count: bytes.count, at: UInt64(round) << 20) == bytes, "round \(round)")
        }
        let device = try #require(volume.device as? ISCSIBlockDevice)
        #expect(device.reconnections >= 4, "the target did not drop the connections (\(device.reconnections) reconnections)")
        #expect(volume.membership?.slot == membership?.slot && volume.membership?.generation == membership?.generation,
                "the host lost its membership over dropped connections")
        try file.close()
        try volume.unmount()
        let fsck = try runTool("fsck.vmfs", ["-n", url])
        #expect(fsck.status == 0, "\(fsck.output)")
    }

    @Test func badPortalTargetLUNAndCredentialsAreNamed() throws {
        try requireTarget()
        let tgt = try TgtTarget()
        let open = try tgt.addTarget(name: "open", size: 1 << 30)
        let secured = try tgt.addTarget(name: "chap", size: 1 << 30, chap: (user: "vmfs", password: "right-secret-1"))
        func failure(_ url: String) -> String {
            let result = try? runTool("vmfs", ["info", url])
            #expect(result?.status != 0)
            return result?.stderr ?? ""
        }
        let closedPort = failure("iscsi://127.0.0.1:1/\(open.iqn)/1")
        #expect(closedPort.contains("127.0.0.1:1") && closedPort.contains("unreachable"), "\(closedPort)")
        let wrongTarget = failure("iscsi://\(tgt.host):\(tgt.port)/iqn.2026-11.org.example:missing/1")
        #expect(wrongTarget.contains("no target named iqn.2026-11.org.example:missing"), "\(wrongTarget)")
        let wrongLUN = failure(tgt.url(open, lun: 7))
        #expect(wrongLUN.contains("no usable LUN 7"), "\(wrongLUN)")
        let wrongPassword = failure(tgt.url(secured, user: "vmfs", password: "wrong-secret-1"))
        #expect(wrongPassword.contains("authentication failed") && wrongPassword.contains("vmfs"), "\(wrongPassword)")
        #expect(!wrongPassword.contains("wrong-secret-1"), "the password must not be shown: \(wrongPassword)")
        let malformed = failure("iscsi://127.0.0.1/no-lun-here")
        #expect(malformed.contains("iscsi://"), "\(malformed)")
        // The right password logs in (the URL's credentials reach the target).
        let made = try runTool("mkfs.vmfs", ["--atomic-update", "paxos"] + iscsiMkfsFlags + [tgt.url(secured, user: "vmfs", password: "right-secret-1")])
        #expect(made.status == 0, "\(made.output)")
        #expect(!made.output.contains("right-secret-1"))
    }

    @Test func methodsAreCheckedAgainstTheDevice() throws {
        try requireTarget()
        let tgt = try TgtTarget()
        let target = try tgt.addTarget(size: 1 << 30)
        let url = tgt.url(target)
        let ofd = try runTool("mkfs.vmfs", ["--atomic-update", "ofd", url])
        #expect(ofd.status != 0 && ofd.stderr.contains("only exclude processes of one machine"), "\(ofd.output)")
        // tgt leaves COMPARE AND WRITE out: ATS is refused naming the sense, auto falls back to scsi2.
        let ats = try runTool("mkfs.vmfs", ["--atomic-update", "ats", url])
        #expect(ats.status != 0 && ats.stderr.contains("does not execute COMPARE AND WRITE")
                && ats.stderr.contains("invalid command operation code"), "\(ats.output)")
        let auto = try runTool("mkfs.vmfs", iscsiMkfsFlags + [url])
        #expect(auto.status == 0 && auto.stdout.contains("[scsi2]") && auto.stdout.contains("COMPARE AND WRITE: not supported"), "\(auto.output)")
        let scratch = Scratch("methods")
        let image = scratch.file("plain.img")
        let onFile = try runTool("mkfs.vmfs", ["--size", "1G", "--atomic-update", "ats", image])
        #expect(onFile.status != 0 && onFile.stderr.contains("needs a SCSI LUN"), "\(onFile.output)")
        #expect(!FileManager.default.fileExists(atPath: image), "a failed mkfs.vmfs left its image behind")
        // A volume whose hosts coordinate at the LUN cannot be mounted around it (through the backing file).
        do {
            _ = try Volume.mount(path: target.images[0], options: MountOptions(host: HostIdentity.local(override: "bypass")))
            Issue.record("a scsi2 volume mounted through its backing file")
        } catch {
            #expect(error.code == .unsupported && error.message.contains("iscsi://"), "\(error)")
        }
    }

    @Test func lunSmallerThanTheVolumeIsRefused() throws {
        try requireTarget()
        let tgt = try TgtTarget()
        let big = try tgt.addTarget(name: "big", size: 2 << 30)
        let made = try runTool("mkfs.vmfs", ["--atomic-update", "paxos"] + iscsiMkfsFlags + [tgt.url(big)])
        try #require(made.status == 0, "\(made.output)")
        // A second LUN of 1 GiB that carries the 2 GiB volume's header.
        let small = try tgt.addTarget(name: "small", size: 1 << 30)
        let header = try backing(big.images[0], at: 0, count: 4096)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: small.images[0]))
        output.write(Data(header))
        try output.close()
        do {
            _ = try Volume.mount(path: tgt.url(small), options: MountOptions(host: HostIdentity.local(override: "small")))
            Issue.record("a LUN smaller than its volume was mounted")
        } catch {
            #expect(error.message.contains("\(UInt64(1) << 30) bytes") && error.message.contains("\(UInt64(2) << 30) bytes"), "\(error)")
        }
        let info = try runTool("vmfs", ["info", tgt.url(small)])
        #expect(info.status != 0, "\(info.output)")
    }
}
