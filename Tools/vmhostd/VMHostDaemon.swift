import ArgumentParser
import Foundation
import HostAgent
import HostAgentAPI
import Hummingbird
import HummingbirdTLS
import Logging
import Metrics
import NIOPosix
import OpenAPIHummingbird
import OpenAPIRuntime
import Prometheus
import ServiceLifecycle
import UnixSignals
import VMFSCore
import VMFSFuse

/// `vmhostd`: the host agent daemon (docs/AGENT.md).
@main
struct VMHostDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmhostd",
        abstract: "The host agent: this host's member of its VMFS volumes, the supervisor of its VMs, and their API.")

    @Option(name: .long, help: "The configuration file.")
    var config = "/etc/vmfs/hostd.toml"

    @Flag(name: .long, help: "Check the configuration and exit.")
    var check = false

    func run() async throws {
        let executableDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let settings: HostdConfiguration
        do { settings = try HostdConfiguration.load(path: config, executableDirectory: executableDirectory) } catch {
            throw ValidationError(error.description)
        }
        if check {
            print("\(config): valid; host \(settings.agent.settings.host.name), \(settings.agent.datastores.count) volume(s)")
            return
        }
        signal(SIGPIPE, SIG_IGN)
        var logger = Logger(label: "vmhostd")
        logger.logLevel = .info
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let agent: HostAgent
        do { agent = try HostAgent(configuration: settings.agent) } catch { throw ValidationError(error.description) }
        agent.setMountProvider { (datastore, mountPoint, options) throws(AgentError) -> AgentMount in
            do {
                let mount = try EmbeddedMount.start(volume: try datastore.volume(), device: datastore.configuration.device,
                                                    mountpoint: mountPoint, options: options)
                return AgentMount(volume: datastore.name, stop: { mount.stop() }, isActive: { mount.isServing })
            } catch let error as AgentError {
                throw error
            } catch {
                throw AgentError(.invalidArgument, "cannot mount \(datastore.name) on \(mountPoint): \(error)", field: "mountPoint")
            }
        }
        agent.start()
        for (volume, mountPoint) in settings.mounts.sorted(by: { $0.key < $1.key }) {
            do { try agent.mount(volume, at: mountPoint, options: []) } catch {
                logger.error("cannot mount \(volume) at \(mountPoint): \(error.message)")
            }
        }
        let blockingPool = NIOThreadPool(numberOfThreads: 16)
        blockingPool.start()
        let shutdown = StreamShutdown()
        let handler = APIHandler(agent: agent, blockingPool: blockingPool, metrics: AgentMetrics(registry: registry), shutdown: shutdown)

        var services: [any Service] = [shutdown]
        // The local listener: root only. Its directory is 0700 and the socket 0600.
        let socketDirectory = URL(fileURLWithPath: settings.unixSocket).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        chmod(socketDirectory, 0o700)
        unlink(settings.unixSocket)
        let local = Application(
            router: try Self.router(handler: handler, tokens: nil),
            configuration: .init(address: .unixDomainSocket(path: settings.unixSocket), serverName: "vmhostd"),
            onServerRunning: { _ in chmod(settings.unixSocket, 0o600) }, logger: logger)
        services.append(local)
        if let listen = settings.listen {
            let tls = try TLSMaterial.configuration(
                certificate: settings.certificatePath, privateKey: settings.privateKeyPath,
                stateDirectory: settings.agent.settings.stateDirectory, hostName: settings.agent.settings.host.name, listenHost: listen.host)
            let remote = Application(
                router: try Self.router(handler: handler, tokens: settings.tokens),
                server: try .tls(.http1(), tlsConfiguration: tls),
                configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "vmhostd"), logger: logger)
            services.append(remote)
        }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch { logger.error("API servers stopped: \(error)") }
        agent.shutdown(powerOffVMs: settings.powerOffVMsOnStop)
        try? await blockingPool.shutdownGracefully()
        unlink(settings.unixSocket)
    }

    /// The API's routes, behind bearer authentication when `tokens` are given (the TCP listener).
    static func router(handler: APIHandler, tokens: [String]?) throws -> Router<BasicRequestContext> {
        let router = Router()
        router.middlewares.add(MetricsMiddleware())
        if let tokens { router.middlewares.add(BearerAuthentication(tokens: tokens)) }
        router.middlewares.add(MethodNotAllowed())
        // Times carry milliseconds (failover timelines, events): RFC 3339 with fractional seconds.
        try handler.registerHandlers(on: router, configuration: .init(dateTranscoder: .iso8601WithFractionalSeconds),
                                     middlewares: [APIErrorMiddleware(), JSONNullRejection()])
        return router
    }
}
