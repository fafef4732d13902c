import Dispatch
import FoundationEssentials
import Glibc
import Logging
import ProxyCore

/// Process lifecycle: start the server, announce it, handle signals, stop gracefully.
enum Daemon {
    /// Never returns on success (runs the Dispatch main loop until a signal stops the process).
    static func run(
        configuration: ProxyConfiguration, admin endpoints: [(address: AdminAddress, roles: Set<AdminRole>)],
        logger: Logger
    ) throws(StartupError) -> Never {
        signal(SIGPIPE, SIG_IGN)
        raiseOpenFileLimit(configuration: configuration, logger: logger)
        let server: ProxyServer
        let addresses: [SocketAddress]
        var adminAddresses: [(address: SocketAddress, roles: Set<AdminRole>)] = []
        var admin: AdminServer?
        do {
            server = try ProxyServer(configuration: configuration, logger: logger)
            addresses = try server.start()
            if !endpoints.isEmpty {
                let adminServer = AdminServer(endpoints: endpoints, proxy: server, logger: logger)
                adminAddresses = try adminServer.start()
                admin = adminServer
            }
        } catch let error as IOError {
            throw StartupError(message: listenErrorMessage(error, listen: configuration.listen))
        } catch {
            throw StartupError(message: "\(error)")
        }
        if endpoints.contains(where: { $0.roles.contains(.health) }) {
            server.startReadinessMonitor()
        }
        if let warning = ListenerExposure.warning(for: addresses) {
            logger.warning("\(warning)")
        }
        if let expiry = server.authProviderTokenExpiry {
            logger.warning(
                "the kubeconfig's oidc id-token expires at \(expiry.formatted(.iso8601)); proxyd does not refresh it (use an exec plugin such as kubelogin for long-running use)")
        }
        // Unbuffered, so tools that wait for this line see it at once.
        var announcement = addresses.map { "Starting to serve on \($0)\n" }.joined()
        for (address, roles) in adminAddresses {
            let what = roles.count == 2 ? "metrics and health checks" : roles.contains(.metrics) ? "metrics" : "health checks"
            announcement += "Serving \(what) on \(address)\n"
        }
        Console.writeStdout(announcement)
        if let url = ServiceIndexURL.announced(addresses: addresses) {
            if configuration.logFormat == .json {
                JSONLogHandler.writeLine(
                    level: .notice, message: "Service index for browsers", metadata: ["url": "\(url)"], label: "proxyd")
            } else {
                Console.writeStderr("Service index for browsers: \(url)\n")
            }
        }
        SystemdActivation.notify("READY=1")

        // A parent (a test runner, some supervisors) may have blocked these in the inherited mask.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGTERM)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let signalQueue = DispatchQueue(label: "proxyd.signals")
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            source.setEventHandler {
                stop(server: server, logger: logger, signalName: sig == SIGTERM ? "SIGTERM" : "SIGINT")
            }
            source.resume()
            sources.append(source)
        }
        var watchdog: (any DispatchSourceTimer)?
        if let interval = SystemdActivation.watchdogInterval(environment: ProcessInfo.processInfo.environment) {
            let timer = DispatchSource.makeTimerSource(queue: signalQueue)
            let micros = Int(interval.components.seconds) * 1_000_000 + Int(interval.components.attoseconds / 1_000_000_000_000)
            timer.schedule(deadline: .now(), repeating: .microseconds(micros))
            timer.setEventHandler {
                server.whenLoopsResponsive { SystemdActivation.notify("WATCHDOG=1") }
            }
            timer.resume()
            watchdog = timer
        }
        // SIGHUP: load the kubeconfig again (what changes and what does not: ProxyServer+Reload.swift).
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
        hangup.setEventHandler {
            logger.notice("SIGHUP received, reloading the configuration")
            SystemdActivation.notify("RELOADING=1")
            server.reload(reason: "SIGHUP") { _ in SystemdActivation.notify("READY=1") }
        }
        hangup.resume()
        sources.append(hangup)
        withExtendedLifetime((sources, watchdog, admin)) {
            dispatchMain()
        }
    }

    /// Go raises the soft open-file limit to the hard one at start; so does proxyd (before the default
    /// `--max-connections` is derived from it).
    private static func raiseOpenFileLimit(configuration: ProxyConfiguration, logger: Logger) {
        let (before, after, error) = OpenFileLimit.raiseSoftToHard()
        if let error {
            logger.warning("cannot raise the open-file limit from \(before.soft) to \(before.hard): \(error)")
        }
        let raised = after.soft != before.soft ? " (raised from \(before.soft))" : ""
        logger.notice(
            "open-file limit \(after.soft)\(raised), hard limit \(after.hard); --max-connections \(configuration.effectiveMaxConnections)")
    }

    private static func stop(server: ProxyServer, logger: Logger, signalName: String) {
        logger.notice("\(signalName) received, finishing in-flight requests")
        SystemdActivation.notify("STOPPING=1")
        server.shutdown {
            exit(0)
        }
    }

    /// Go-like text: `listen tcp 127.0.0.1:8001: bind: address already in use`.
    static func listenErrorMessage(_ error: IOError, listen: ProxyConfiguration.Listen) -> String {
        switch listen {
        case .tcp(let address, let port):
            let host = address.contains(":") && !address.hasPrefix("[") ? "[\(address)]" : address
            return "listen tcp \(host):\(port): \(error)"
        case .unix(let path):
            return "listen unix \(path): \(error)"
        case .inherited:
            return "systemd socket: \(error)"
        }
    }
}
