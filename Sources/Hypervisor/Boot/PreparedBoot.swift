/// A boot source whose files are mapped and parsed, ready to load once guest memory exists.
struct PreparedBoot {
    enum Kind {
        case linux(kernel: MappedFile, parsed: LinuxLoader.Kernel, initrd: MappedFile?, commandLine: String)
        case testGuest(image: MappedFile, parsed: ELFImage, configuration: TestGuestConfiguration)
    }

    let kind: Kind

    init(_ source: BootSource) throws(HypervisorError) {
        switch source {
        case .linux(let linux):
            let kernel = try MappedFile(path: linux.kernelPath, role: "kernel")
            let parsed = try LinuxLoader.parseKernel(kernel)
            let initrd = try linux.initrdPath.map { (path) throws(HypervisorError) in try MappedFile(path: path, role: "initrd") }
            kind = .linux(kernel: kernel, parsed: parsed, initrd: initrd, commandLine: linux.commandLine)
        case .testGuest(let guest):
            let image = try MappedFile(path: guest.imagePath, role: "test guest image")
            kind = .testGuest(image: image, parsed: try ELFImage(bytes: image.bytes, name: image.path), configuration: guest)
        }
    }

    func load(into memory: GuestMemory, vcpuCount: Int, pciRoutes: [PCIInterruptRoute]) throws(HypervisorError) -> BootPlan {
        switch kind {
        case .linux(let kernel, let parsed, let initrd, let commandLine):
            try LinuxLoader.load(kernelFile: kernel, kernel: parsed, initrdFile: initrd, commandLine: commandLine,
                                 memory: memory, vcpuCount: vcpuCount, pciRoutes: pciRoutes)
        case .testGuest(let image, let parsed, let configuration):
            try TestGuestLoader.load(imageFile: image, image: parsed, configuration: configuration,
                                     memory: memory, vcpuCount: vcpuCount, pciRoutes: pciRoutes)
        }
    }
}
