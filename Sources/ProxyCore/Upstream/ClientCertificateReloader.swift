import Dispatch
import FoundationEssentials
import Logging
import Synchronization

/// Watches the client certificate and key files of the kubeconfig user and, when their content changes, builds new
/// TLS contexts for new upstream connections. Connections made with the old identity finish what they carry and
/// take no new requests (`onChange` retires them), so the switch costs no failed request.
///
/// client-go checks the files every 5 minutes and then closes every connection; proxyd checks every 5 s and drains.
/// A certificate and key that do not match (the files are written one after the other) are not an error yet: the
/// old identity stays until a check finds a matching pair, and only then is the change applied.
final class ClientCertificateReloader: Sendable {
    static let pollInterval: Duration = .seconds(5)

    private let certificateFile: String?
    private let keyFile: String?
    private let base: TLSConfiguration
    private let logger: Logger
    private let counters: ServiceCounters?
    /// Installs the contexts (HTTP/2-capable and `http/1.1`-only for upgrades) and retires old connections.
    private let install: @Sendable (_ main: TLSContext, _ upgrade: TLSContext) -> Void
    /// The PEM pair in use, and the last mismatch reported (so a half-written pair is logged once).
    private let state: Mutex<(certificate: [UInt8]?, key: [UInt8]?, reported: String?)>
    nonisolated(unsafe) private let timer: any DispatchSourceTimer
    private let interval: Duration

    /// Returns nil when neither the certificate nor the key comes from a file.
    init?(
        target: UpstreamTarget, logger: Logger, counters: ServiceCounters? = nil,
        pollInterval: Duration = ClientCertificateReloader.pollInterval,
        install: @escaping @Sendable (_ main: TLSContext, _ upgrade: TLSContext) -> Void
    ) {
        guard target.scheme == "https", target.clientCertificateFile != nil || target.clientKeyFile != nil else {
            return nil
        }
        certificateFile = target.clientCertificateFile
        keyFile = target.clientKeyFile
        base = target.tls
        self.logger = logger
        self.counters = counters
        self.install = install
        state = Mutex((target.tls.clientCertificatePEM, target.tls.clientKeyPEM, nil))
        interval = pollInterval
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
    }

    func start() {
        let nanos = Int(interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000)
        timer.schedule(deadline: .now() + .nanoseconds(nanos), repeating: .nanoseconds(nanos))
        timer.setEventHandler { [weak self] in self?.check() }
        timer.activate()
    }

    func stop() {
        timer.cancel()
        timer.activate()  // see CredentialStore.stopWatching: releasing an inactive source traps
    }

    deinit { stop() }

    /// Reads the files; installs new contexts when the pair changed and is usable. Returns whether it installed.
    @discardableResult
    func check() -> Bool {
        let (currentCertificate, currentKey) = state.withLock { ($0.certificate, $0.key) }
        // A file that cannot be read right now (being replaced) keeps the identity in use.
        guard let certificate = read(certificateFile) ?? currentCertificate, let key = read(keyFile) ?? currentKey else {
            return false
        }
        guard certificate != currentCertificate || key != currentKey else { return false }
        var configuration = base
        configuration.clientCertificatePEM = certificate
        configuration.clientKeyPEM = key
        var upgrade = configuration
        upgrade.alpn = ["http/1.1"]
        let main: TLSContext
        let upgradeContext: TLSContext
        do {
            main = try TLSContext(configuration: configuration)
            upgradeContext = try TLSContext(configuration: upgrade)
        } catch {
            let reason = error.reason
            let first = state.withLock { s in
                defer { s.reported = reason }
                return s.reported != reason
            }
            if first {
                counters?.credentialRefreshed(.clientCertificate, succeeded: false)
                logger.warning(
                    "client certificate files changed but cannot be used yet (\(reason)); keeping the current identity")
            }
            return false
        }
        state.withLock { $0 = (certificate, key, nil) }
        counters?.credentialRefreshed(.clientCertificate, succeeded: true)
        logger.info("client certificate files changed: new upstream connections use the new identity")
        install(main, upgradeContext)
        return true
    }

    private func read(_ path: String?) -> [UInt8]? {
        guard let path, case .success(let bytes) = ConfigFiles.read(path), !bytes.isEmpty else { return nil }
        return bytes
    }
}
