import Dispatch
public import FoundationEssentials
public import Logging
import Synchronization

/// Holds the current `CredentialSnapshot`, shared read-mostly by every event loop, and keeps it fresh:
/// a `tokenFile` (or an in-cluster service-account token) is re-read when it changes; an exec plugin's credential
/// is refreshed before it expires, and at once after a 401 (`refresh(ifStillGeneration:completion:)`).
///
/// Readers take one uncontended lock per request (not per byte) to copy the snapshot; rotation swaps the whole
/// snapshot at once, so a request never sees half of an update.
///
/// A token file that cannot be read, or an exec plugin that fails, when the store is created does not make it fail:
/// the snapshot then says why it is `unavailable`, the plugin is retried with a back-off (1 s doubling to 60 s) and
/// the file re-read every poll, and the first success installs the credential.
public final class CredentialStore: Sendable {
    private let state: Mutex<CredentialSnapshot>
    private let tokenFile: String?
    private let template: CredentialSnapshot
    /// Created inactive in `init` when there is a token file; DispatchSource is thread-safe.
    nonisolated(unsafe) private let timer: (any DispatchSourceTimer)?
    private let interval: Duration
    /// Set when the credential comes from an exec plugin.
    private let exec: ExecRefresher?
    private let counters: ServiceCounters?
    private let logger: Logger?

    /// How often a token file is checked for changes (client-go re-reads about every 50–60 s; checking is a
    /// cheap read, so proxyd picks rotations up sooner).
    public static let tokenFilePollInterval: Duration = .seconds(5)

    /// With an exec plugin in `credentials`, runs it once now (blocking the caller: call it before serving).
    /// - Parameter sendCredentials: `false` for an `http://` server: credentials are never sent in the clear.
    /// - Throws: `CredentialError` when the credentials are unusable whatever happens later: an exec configuration
    ///   proxyd cannot run (`interactiveMode: Always`, a bad `apiVersion`), an expired or unsupported auth-provider.
    ///   A failing plugin run or an unreadable token file is not thrown: see `current.unavailable`.
    public convenience init(
        credentials: StaticCredentials, sendCredentials: Bool, execCluster: ExecClusterInfo? = nil,
        logger: Logger? = nil, counters: ServiceCounters? = nil,
        pollInterval: Duration = CredentialStore.tokenFilePollInterval
    ) throws(CredentialError) {
        var runner: (@Sendable () throws(CredentialError) -> ExecCredentialResult)?
        if sendCredentials, let config = credentials.exec {
            let plugin = try ExecPlugin(config: config, cluster: execCluster)
            runner = { () throws(CredentialError) in try plugin.run() }
        }
        try self.init(
            credentials: credentials, sendCredentials: sendCredentials, execRunner: runner, logger: logger,
            counters: counters, pollInterval: pollInterval)
    }

    /// `execRunner` stands for the plugin (tests substitute it); `execBackoff` is the wait after a failed run, in
    /// seconds, doubling up to its maximum.
    init(
        credentials: StaticCredentials, sendCredentials: Bool,
        execRunner: (@Sendable () throws(CredentialError) -> ExecCredentialResult)?, logger: Logger? = nil,
        counters: ServiceCounters? = nil, pollInterval: Duration = CredentialStore.tokenFilePollInterval,
        execBackoff: (initial: Double, maximum: Double) = (1, 60)
    ) throws(CredentialError) {
        self.counters = counters
        self.logger = logger
        var impersonation = HTTPHeaders()
        if let user = credentials.impersonateUser {
            impersonation.add(name: "Impersonate-User", value: user)
            for group in credentials.impersonateGroups {
                impersonation.add(name: "Impersonate-Group", value: group)
            }
            if let uid = credentials.impersonateUID {
                impersonation.add(name: "Impersonate-Uid", value: uid)
            }
            for (key, values) in credentials.impersonateExtra.sorted(by: { $0.key < $1.key }) {
                for value in values {
                    impersonation.add(name: "Impersonate-Extra-" + Self.headerKeyEscape(key), value: value)
                }
            }
        }
        var authorization: String?
        if let token = credentials.bearerToken, !token.isEmpty {
            authorization = "Bearer " + token
        } else if let user = credentials.username {
            let raw = Array("\(user):\(credentials.password ?? "")".utf8)
            authorization = "Basic " + Data(raw).base64EncodedString()
        }
        var providerExpiry: Date?
        if authorization == nil, credentials.tokenFile == nil, sendCredentials,
            let provider = credentials.authProvider
        {
            let token = try AuthProvider.token(provider: provider, config: credentials.authProviderConfig)
            authorization = "Bearer " + token.bearer
            providerExpiry = token.expiry
        }
        authProviderTokenExpiry = providerExpiry
        var tokenFile = credentials.tokenFile
        if !sendCredentials {
            authorization = nil
            impersonation = HTTPHeaders()
            tokenFile = nil
        }
        template = CredentialSnapshot(authorization: authorization, impersonation: impersonation)
        self.tokenFile = tokenFile
        var initial = template
        if let tokenFile {
            // The file's token wins over an inline one once read (client-go); without either, nothing is sent.
            do throws(CredentialError) {
                initial.authorization = "Bearer " + (try Self.readToken(tokenFile))
            } catch {
                if initial.authorization == nil { initial.unavailable = error.description }
                logger?.error("\(error.description); re-reading it every \(pollInterval)")
            }
        }
        var first: Result<ExecCredentialResult, CredentialError>?
        if let execRunner {
            do throws(CredentialError) {
                let result = try execRunner()
                first = .success(result)
                initial.authorization = result.token.map { "Bearer " + $0 }
                initial.expiration = result.expiration
            } catch {
                first = .failure(error)
                initial.authorization = nil
                initial.unavailable = "getting credentials: \(error.description)"
                logger?.error("getting credentials: \(error.description); retrying with a back-off")
            }
            initial.pluginGeneration = 1
            counters?.credentialRefreshed(.execPlugin, succeeded: initial.unavailable == nil)
        }
        state = Mutex(initial)
        interval = pollInterval
        timer = tokenFile == nil ? nil : DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        exec = execRunner.map { ExecRefresher(run: $0, first: first!, logger: logger, backoff: execBackoff) }
    }

    /// Whether the credential comes from an exec plugin (and so may be refreshed after a 401).
    public var usesExecPlugin: Bool { exec != nil }

    /// The exec plugin's client certificate and key (PEM), if its last good answer had them.
    public var execClientIdentity: (certificate: [UInt8], key: [UInt8])? {
        exec?.identity
    }

    /// Called (on a Dispatch queue) whenever the exec plugin returns a different client certificate or key.
    public func onExecClientIdentityChange(_ handler: @escaping @Sendable ([UInt8], [UInt8]) -> Void) {
        exec?.setIdentityHandler(handler)
    }

    /// How often the exec plugin ran (start-up included).
    var execRuns: Int { exec?.runs ?? 0 }

    /// Runs the exec plugin again unless the credential already changed since generation `generation` (then, or
    /// when another run is already under way, no second run starts). `completion` runs on a Dispatch queue once
    /// the credential is as fresh as it gets: re-read `current` then. After a failed run, further refreshes are
    /// refused for a growing back-off (1 s doubling to 60 s) and complete at once, keeping the last credential.
    public func refresh(ifStillGeneration generation: UInt64, completion: @escaping @Sendable () -> Void) {
        guard let exec else {
            completion()
            return
        }
        exec.refresh(ifStillGeneration: generation, store: self, completion: completion)
    }

    /// Installs a plugin result (called by `ExecRefresher`, under its lock).
    fileprivate func install(_ result: ExecCredentialResult, generation: UInt64) {
        state.withLock { snapshot in
            snapshot.authorization = result.token.map { "Bearer " + $0 }
            snapshot.pluginGeneration = generation
            snapshot.expiration = result.expiration
            snapshot.unavailable = nil
            snapshot.revision += 1
        }
    }

    /// A plugin run failed (called by `ExecRefresher`): while there never was a credential, the reason shown to
    /// clients becomes the newest one.
    fileprivate func execFailed(_ error: CredentialError) {
        counters?.credentialRefreshed(.execPlugin, succeeded: false)
        state.withLock { snapshot in
            if snapshot.unavailable != nil { snapshot.unavailable = "getting credentials: \(error.description)" }
        }
    }

    fileprivate func execSucceeded() {
        counters?.credentialRefreshed(.execPlugin, succeeded: true)
    }

    /// Why the credentials are known not to work right now, for `/readyz`; nil when they may.
    public var failure: String? {
        let snapshot = current
        if let unavailable = snapshot.unavailable { return unavailable }
        if let exec, snapshot.isExpired(now: Date()), let error = exec.lastError {
            return "the exec plugin's credential expired and refreshing it fails: getting credentials: \(error)"
        }
        return nil
    }

    /// On request (SIGHUP with an unchanged configuration): re-reads the token file now, and runs a plugin whose
    /// credential is missing or expired now, whatever its back-off.
    public func retryNow() {
        if let tokenFile { reloadTokenFile(tokenFile) }
        guard let exec else { return }
        let snapshot = current
        if snapshot.unavailable != nil || snapshot.isExpired(now: Date()) {
            exec.clearBackoff()
            refresh(ifStillGeneration: snapshot.pluginGeneration ?? 1) {}
        }
    }

    /// When the `auth-provider` (oidc) token in use expires; proxyd does not refresh it (see `AuthProvider`).
    public let authProviderTokenExpiry: Date?

    /// The credentials to add to the next request.
    public var current: CredentialSnapshot { state.withLock { $0 } }

    /// Starts re-reading the token file, if there is one (a failed re-read keeps the last good token), or the
    /// exec plugin's refresh timer.
    public func startWatching() {
        exec?.start(store: self)
        guard let tokenFile, let timer else { return }
        let nanos = Int(interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000)
        timer.schedule(deadline: .now() + .nanoseconds(nanos), repeating: .nanoseconds(nanos))
        timer.setEventHandler { [weak self] in
            self?.reloadTokenFile(tokenFile)
        }
        timer.activate()
    }

    public func stopWatching() {
        exec?.stop()
        timer?.cancel()
        // libdispatch traps on releasing a source that was never activated ("Release of an inactive object");
        // activating a cancelled source runs no handler, and activating an active one does nothing.
        timer?.activate()
    }

    deinit {
        stopWatching()
    }

    /// Re-reads the token file now; returns whether the token changed.
    @discardableResult
    func reloadTokenFile(_ path: String) -> Bool {
        let token: String
        do throws(CredentialError) {
            token = try Self.readToken(path)
        } catch {
            counters?.credentialRefreshed(.tokenFile, succeeded: false)
            state.withLock { snapshot in
                if snapshot.unavailable != nil { snapshot.unavailable = error.description }
            }
            return false
        }
        let value = "Bearer " + token
        let (changed, recovered) = state.withLock { snapshot -> (Bool, Bool) in
            guard snapshot.authorization != value || snapshot.unavailable != nil else { return (false, false) }
            let recovered = snapshot.unavailable != nil
            snapshot.authorization = value
            snapshot.unavailable = nil
            snapshot.revision += 1
            return (true, recovered)
        }
        if changed { counters?.credentialRefreshed(.tokenFile, succeeded: true) }
        if recovered { logger?.notice("token file \(path) can be read again: requests carry its token") }
        return changed
    }

    /// client-go's escaping of an `Impersonate-Extra-` key: every byte that is not an RFC 9110 token character,
    /// and `%` itself, becomes `%XX`, so the header name stays valid (`example.com/team` → `example.com%2Fteam`).
    static func headerKeyEscape(_ key: String) -> String {
        var out = ""
        for b in key.utf8 {
            let isTokenChar: Bool
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                isTokenChar = true
            default:
                isTokenChar = "!#$&'*+-.^_`|~".utf8.contains(b)
            }
            if isTokenChar {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
            }
        }
        return out
    }

    static func readToken(_ path: String) throws(CredentialError) -> String {
        let bytes: [UInt8]
        switch ConfigFiles.read(path) {
        case .success(let content): bytes = content
        case .failure(let failure): throw CredentialError("cannot read token file \(path): \(failure.reason)")
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        if token.isEmpty {
            throw CredentialError("token file \(path) is empty")
        }
        return token
    }
}

enum ExecRefresherTiming {
    /// Never refresh sooner than this after a run, whatever the expiry says.
    static let minimumRefreshDelay: Double = 1

    /// When to refresh a credential that expires at `expiration`: at 80 % of its remaining life or 10 s before
    /// it expires, whichever is later, but not sooner than `minimumRefreshDelay`.
    static func refreshDelay(expiration: Date, now: Date) -> Double {
        let life = expiration.timeIntervalSince(now)
        return max(life * 0.8, life - 10, minimumRefreshDelay)
    }
}

/// The exec plugin's refresh machinery: single-flight runs on a Dispatch queue, a timer before expiry, back-off
/// after failures.
private final class ExecRefresher: Sendable {
    struct State {
        var generation: UInt64 = 1
        var expiration: Date?
        var identity: (certificate: [UInt8], key: [UInt8])?
        var running = false
        var waiters: [@Sendable () -> Void] = []
        var failures = 0
        /// Uptime nanoseconds before which no run starts (after a failure).
        var quietUntil: UInt64 = 0
        var started = false
        var stopped = false
        var runs = 1
        var identityHandler: (@Sendable ([UInt8], [UInt8]) -> Void)?
        /// False until a run succeeded: failed runs are then retried on a schedule, not only on demand.
        var hasCredential = true
        var lastError: String?
    }

    let run: @Sendable () throws(CredentialError) -> ExecCredentialResult
    let logger: Logger?
    let state: Mutex<State>
    let backoff: (initial: Double, maximum: Double)

    init(
        run: @escaping @Sendable () throws(CredentialError) -> ExecCredentialResult,
        first: Result<ExecCredentialResult, CredentialError>, logger: Logger?,
        backoff: (initial: Double, maximum: Double)
    ) {
        self.run = run
        self.logger = logger
        self.backoff = backoff
        var s = State()
        switch first {
        case .success(let result):
            s.expiration = result.expiration
            if let cert = result.clientCertificatePEM, let key = result.clientKeyPEM { s.identity = (cert, key) }
        case .failure(let error):
            // No credential yet: the first retry comes after the initial back-off, and on schedule after that.
            s.hasCredential = false
            s.failures = 1
            s.lastError = error.description
            s.quietUntil = DispatchTime.now().uptimeNanoseconds + UInt64(backoff.initial * 1e9)
        }
        state = Mutex(s)
    }

    var identity: (certificate: [UInt8], key: [UInt8])? { state.withLock { $0.identity } }
    var runs: Int { state.withLock { $0.runs } }
    /// The error of the last run if it failed.
    var lastError: String? { state.withLock { $0.lastError } }

    /// Lets the next refresh run at once (an operator asked for it).
    func clearBackoff() {
        state.withLock { $0.quietUntil = 0 }
    }

    func setIdentityHandler(_ handler: @escaping @Sendable ([UInt8], [UInt8]) -> Void) {
        state.withLock { $0.identityHandler = handler }
    }

    func start(store: CredentialStore) {
        let (generation, expiration, hasCredential) = state.withLock { s in
            s.started = true
            return (s.generation, s.expiration, s.hasCredential)
        }
        if !hasCredential {
            after(seconds: backoff.initial) { [weak store] in
                store?.refresh(ifStillGeneration: generation) {}
            }
            return
        }
        scheduleExpiryRefresh(generation: generation, expiration: expiration, store: store)
    }

    func stop() {
        state.withLock { $0.stopped = true }
    }

    private func scheduleExpiryRefresh(generation: UInt64, expiration: Date?, store: CredentialStore) {
        guard let expiration else { return }
        let delay = ExecRefresherTiming.refreshDelay(expiration: expiration, now: Date())
        after(seconds: delay) { [weak store] in
            store?.refresh(ifStillGeneration: generation) {}
        }
    }

    private func after(seconds: Double, _ work: @escaping @Sendable () -> Void) {
        DispatchQueue.global(qos: .utility).asyncAfter(
            deadline: .now() + .milliseconds(Int((seconds * 1000).rounded(.up))), execute: work)
    }

    func refresh(ifStillGeneration generation: UInt64, store: CredentialStore, completion: @escaping @Sendable () -> Void) {
        let startRun = state.withLock { s -> Bool? in
            if s.stopped || s.generation != generation { return nil }
            if s.running {
                s.waiters.append(completion)
                return false
            }
            if DispatchTime.now().uptimeNanoseconds < s.quietUntil { return nil }
            s.running = true
            s.waiters.append(completion)
            return true
        }
        switch startRun {
        case .none: completion()
        case .some(false): break
        case .some(true):
            DispatchQueue.global(qos: .utility).async { [self] in
                self.runOnce(store: store)
            }
        }
    }

    private func runOnce(store: CredentialStore) {
        let outcome: Result<ExecCredentialResult, CredentialError>
        do throws(CredentialError) {
            outcome = .success(try run())
        } catch {
            outcome = .failure(error)
        }
        var identityChange: (@Sendable ([UInt8], [UInt8]) -> Void)?
        var newIdentity: ([UInt8], [UInt8])?
        let (waiters, generation, expiration, retryAfter) = state.withLock {
            s -> ([@Sendable () -> Void], UInt64, Date?, Double?) in
            s.runs += 1
            s.running = false
            let waiters = s.waiters
            s.waiters = []
            switch outcome {
            case .success(let result):
                s.failures = 0
                s.quietUntil = 0
                s.hasCredential = true
                s.lastError = nil
                s.generation += 1
                s.expiration = result.expiration
                // Counted before the credential is visible: whoever sees it in use also sees the refresh counted.
                store.execSucceeded()
                store.install(result, generation: s.generation)
                let identity = result.clientCertificatePEM.flatMap { c in result.clientKeyPEM.map { (c, $0) } }
                if identity?.0 != s.identity?.certificate || identity?.1 != s.identity?.key {
                    s.identity = identity.map { (certificate: $0.0, key: $0.1) }
                    if let identity {
                        newIdentity = identity
                        identityChange = s.identityHandler
                    }
                }
                return (waiters, s.generation, s.started ? result.expiration : nil, nil)
            case .failure(let error):
                s.failures += 1
                s.lastError = error.description
                let backoff = min(self.backoff.maximum, self.backoff.initial * Double(1 << min(s.failures - 1, 30)))
                s.quietUntil = DispatchTime.now().uptimeNanoseconds + UInt64(backoff * 1e9)
                let retry = (s.expiration != nil || !s.hasCredential) && s.started
                return (waiters, s.generation, nil, retry ? backoff : nil)
            }
        }
        switch outcome {
        case .success(let result):
            logger?.info("exec plugin returned new credentials\(result.expiration.map { " (expire \($0))" } ?? "")")
            if let identityChange, let newIdentity { identityChange(newIdentity.0, newIdentity.1) }
            scheduleExpiryRefresh(generation: generation, expiration: expiration, store: store)
        case .failure(let error):
            store.execFailed(error)
            if store.current.unavailable != nil {
                logger?.error("getting credentials: \(error.description); no credential yet, retrying with a back-off")
            } else {
                logger?.error("refreshing credentials: \(error.description); keeping the last credential")
            }
            if let retryAfter {
                after(seconds: retryAfter) { [weak store] in
                    store?.refresh(ifStillGeneration: generation) {}
                }
            }
        }
        for waiter in waiters { waiter() }
    }
}

/// A credential could not be obtained. The message never contains the secret itself.
public struct CredentialError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
