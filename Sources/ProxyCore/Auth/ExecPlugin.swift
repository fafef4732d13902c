import FoundationEssentials
import Synchronization

/// What an exec plugin may learn about the cluster (`provideClusterInfo: true`): client-go's
/// `clientauthentication.Cluster`, minus `config` (proxyd does not keep kubeconfig `extensions`).
public struct ExecClusterInfo: Sendable, Equatable {
    public var server: String
    public var tlsServerName: String?
    public var insecureSkipTLSVerify: Bool
    /// CA bytes (PEM), a CA file's contents inlined as client-go does.
    public var certificateAuthorityData: [UInt8]?
    public var proxyURL: String?
    public var disableCompression: Bool

    public init(
        server: String, tlsServerName: String? = nil, insecureSkipTLSVerify: Bool = false,
        certificateAuthorityData: [UInt8]? = nil, proxyURL: String? = nil, disableCompression: Bool = false
    ) {
        self.server = server
        self.tlsServerName = tlsServerName
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.certificateAuthorityData = certificateAuthorityData
        self.proxyURL = proxyURL
        self.disableCompression = disableCompression
    }

    public init(target: UpstreamTarget) {
        self.init(
            server: target.serverURL, tlsServerName: target.tls.serverName,
            insecureSkipTLSVerify: target.tls.insecureSkipVerify, certificateAuthorityData: target.tls.caPEM,
            proxyURL: target.proxyURL, disableCompression: target.disableCompression)
    }
}

/// What a plugin run produced. Holds secrets: `description` redacts them.
struct ExecCredentialResult: Sendable, Equatable, CustomStringConvertible {
    var token: String?
    /// PEM; set together with `clientKeyPEM` or not at all.
    var clientCertificatePEM: [UInt8]?
    var clientKeyPEM: [UInt8]?
    /// `status.expirationTimestamp`; `nil` means valid until a 401 says otherwise.
    var expiration: Date?

    var description: String {
        var parts: [String] = []
        if token != nil { parts.append("token: <redacted>") }
        if clientCertificatePEM != nil { parts.append("client certificate and key: <redacted>") }
        if let expiration { parts.append("expires: \(expiration)") }
        return "ExecCredentialResult(\(parts.joined(separator: ", ")))"
    }
}

/// Runs a client-go exec credential plugin (`client.authentication.k8s.io/v1` or `v1beta1`) and decodes its
/// `ExecCredential`, with client-go's error texts. Never interactive: stdin is `/dev/null` and
/// `spec.interactive` is `false`; the plugin's stderr goes to proxyd's stderr, its stdout (the secret) nowhere
/// else.
///
/// `run()` blocks its thread until the plugin exits: call it off the event loops.
final class ExecPlugin: Sendable {
    static let supportedVersions: Set<String> = [
        "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1",
    ]

    /// client-go's `installHintVerboseHelp`, printed after "executable … not found".
    static let installHintHelp = """


        It looks like you are trying to use a client-go credential plugin that is not installed.

        To learn more about this feature, consult the documentation available at:
              https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins
        """

    let config: ExecConfig
    let cluster: ExecClusterInfo?
    /// client-go prints the install hint at most 10 times an hour.
    private let hintWindow = Mutex<(start: Date?, count: Int)>((nil, 0))

    /// - Throws: `CredentialError` for an unsupported apiVersion or `interactiveMode: Always`.
    init(config: ExecConfig, cluster: ExecClusterInfo?) throws(CredentialError) {
        guard Self.supportedVersions.contains(config.apiVersion) else {
            throw CredentialError("exec plugin: invalid apiVersion \"\(config.apiVersion)\"")
        }
        if config.interactiveMode == .always {
            throw CredentialError(
                "exec plugin cannot support interactive mode: standard input is not a terminal"
                    + " (the kubeconfig sets interactiveMode: Always, but proxyd is a daemon and never gives a"
                    + " credential plugin a terminal to prompt on; use a plugin or plugin flags that work without"
                    + " a prompt, with interactiveMode: Never or IfAvailable)")
        }
        self.config = config
        self.cluster = cluster
    }

    // MARK: Input

    /// `KUBERNETES_EXEC_INFO`: the `ExecCredential` the plugin receives, as client-go encodes it.
    func execInfoJSON() -> String {
        var spec: [(String, JSONValue)] = []
        if config.provideClusterInfo, let cluster {
            var c: [(String, JSONValue)] = [("server", .string(cluster.server))]
            if let name = cluster.tlsServerName, !name.isEmpty { c.append(("tls-server-name", .string(name))) }
            if cluster.insecureSkipTLSVerify { c.append(("insecure-skip-tls-verify", .bool(true))) }
            if let ca = cluster.certificateAuthorityData, !ca.isEmpty {
                c.append(("certificate-authority-data", .string(Data(ca).base64EncodedString())))
            }
            if let proxy = cluster.proxyURL, !proxy.isEmpty { c.append(("proxy-url", .string(proxy))) }
            if cluster.disableCompression { c.append(("disable-compression", .bool(true))) }
            spec.append(("cluster", .object(c)))
        }
        spec.append(("interactive", .bool(false)))
        let credential: JSONValue = .object([
            ("kind", .string("ExecCredential")), ("apiVersion", .string(config.apiVersion)),
            ("spec", .object(spec)),
        ])
        return credential.serialized
    }

    /// The plugin's environment: proxyd's own, then the kubeconfig `env` entries (later ones win), then
    /// `KUBERNETES_EXEC_INFO`.
    func environment(base: [String: String]) -> [String: String] {
        var env = base
        for variable in config.env { env[variable.name] = variable.value }
        env["KUBERNETES_EXEC_INFO"] = execInfoJSON()
        return env
    }

    // MARK: Running

    /// The executable to start: the configured path, or the first executable match on `PATH` for a bare name.
    static func locate(_ command: String, path: String?) -> String? {
        if command.contains("/") {
            return ConfigFiles.isExecutableFile(command) ? command : nil
        }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + command
            if ConfigFiles.isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    /// Runs the plugin once and decodes its answer.
    /// - Throws: `CredentialError` with client-go's message (never the plugin's stdout).
    func run(
        environment base: [String: String] = ProcessInfo.processInfo.environment, now: Date = Date()
    ) throws(CredentialError) -> ExecCredentialResult {
        let env = environment(base: base)
        guard let executable = Self.locate(config.command, path: base["PATH"]) else {
            throw notFound()
        }
        let outcome: SpawnedProcess.Outcome
        switch SpawnedProcess.run(executable: executable, arguments: config.args, environment: env) {
        case .success(let result): outcome = result
        case .failure: throw notFound()
        }
        guard let status = outcome.exitStatus else {
            throw CredentialError("exec: executable \(config.command) failed with exit code -1")
        }
        if status != 0 {
            throw CredentialError("exec: executable \(config.command) failed with exit code \(status)")
        }
        return try Self.decode(outcome.stdout, apiVersion: config.apiVersion)
    }

    private func notFound() -> CredentialError {
        var message = "exec: executable \(config.command) not found"
        let showHint = hintWindow.withLock { window in
            let now = Date()
            if let start = window.start, now.timeIntervalSince(start) < 3600 {
                guard window.count < 10 else { return false }
                window.count += 1
            } else {
                window = (now, 1)
            }
            return true
        }
        if showHint {
            message += Self.installHintHelp
            if let hint = config.installHint, !hint.isEmpty { message += "\n\n" + hint }
        }
        return CredentialError(message)
    }

    // MARK: Output

    /// Decodes the plugin's stdout, strictly: an `ExecCredential` of the configured version with a token or a
    /// certificate and key, and an RFC 3339 expiry if any. Messages never quote the output.
    static func decode(_ output: [UInt8], apiVersion: String) throws(CredentialError) -> ExecCredentialResult {
        guard let document = JSONDocument.parse(output) else {
            throw CredentialError("decoding stdout: invalid JSON")
        }
        guard let object = document.object else {
            throw CredentialError("decoding stdout: not a JSON object")
        }
        guard let version = object["apiVersion"]?.string, !version.isEmpty else {
            throw CredentialError("decoding stdout: Object 'apiVersion' is missing")
        }
        guard let kind = object["kind"]?.string, !kind.isEmpty else {
            throw CredentialError("decoding stdout: Object 'Kind' is missing")
        }
        guard version == apiVersion else {
            throw CredentialError(
                "exec plugin is configured to use API version \(apiVersion), plugin returned version \(version)")
        }
        guard kind == "ExecCredential" else {
            throw CredentialError("decoding stdout: unexpected kind \"\(kind)\" (want ExecCredential)")
        }
        guard let rawStatus = object["status"], rawStatus != .null else {
            throw CredentialError("exec plugin didn't return a status field")
        }
        guard let status = rawStatus.object else {
            throw CredentialError("decoding stdout: status is not an object")
        }
        func string(_ key: String) throws(CredentialError) -> String {
            switch status[key] {
            case .none, .null: return ""
            case .string(let value): return value
            default: throw CredentialError("decoding stdout: status.\(key) is not a string")
            }
        }
        let token = try string("token")
        let cert = try string("clientCertificateData")
        let key = try string("clientKeyData")
        if token.isEmpty && cert.isEmpty && key.isEmpty {
            throw CredentialError("exec plugin didn't return a token or cert/key pair")
        }
        if cert.isEmpty != key.isEmpty {
            throw CredentialError("exec plugin returned only certificate or key, not both")
        }
        var expiration: Date?
        let timestamp = try string("expirationTimestamp")
        if !timestamp.isEmpty {
            guard let date = RFC3339.parse(timestamp) else {
                throw CredentialError(
                    "decoding stdout: status.expirationTimestamp \"\(timestamp)\" is not an RFC 3339 time")
            }
            expiration = date
        }
        if !cert.isEmpty && !(TargetResolver.containsPEM(Array(cert.utf8)) && TargetResolver.containsPEM(Array(key.utf8))) {
            throw CredentialError("failed parsing client key/certificate: no PEM data found")
        }
        return ExecCredentialResult(
            token: token.isEmpty ? nil : token, clientCertificatePEM: cert.isEmpty ? nil : Array(cert.utf8),
            clientKeyPEM: key.isEmpty ? nil : Array(key.utf8), expiration: expiration)
    }
}

/// RFC 3339 date-times as Go's `time.Parse(time.RFC3339, …)` reads them: `2006-01-02T15:04:05[.frac](Z|±hh:mm)`.
enum RFC3339 {
    static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var value = 0
            for _ in 0..<n {
                let c = b[i]
                guard c >= 48 && c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
                i += 1
            }
            return value
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")),
            let day = digits(2), expect(UInt8(ascii: "T")), let hour = digits(2), expect(UInt8(ascii: ":")),
            let minute = digits(2), expect(UInt8(ascii: ":")), let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour < 24,
            minute < 60, second < 60
        else { return nil }
        var fraction = 0.0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            if i == start { return nil }
        }
        var offset = 0
        if expect(UInt8(ascii: "Z")) {
            offset = 0
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(UInt8(ascii: ":")), let om = digits(2), oh < 24, om < 60 else {
                return nil
            }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}

/// Just enough JSON output for `KUBERNETES_EXEC_INFO`, with a fixed key order and Go's HTML escaping.
enum JSONValue {
    case string(String)
    case bool(Bool)
    case object([(String, JSONValue)])

    var serialized: String {
        switch self {
        case .string(let s): return jsonQuoted(s, escapeHTML: true)
        case .bool(let v): return v ? "true" : "false"
        case .object(let fields):
            let members = fields.map { jsonQuoted($0.0, escapeHTML: true) + ":" + $0.1.serialized }
            return "{" + members.joined(separator: ",") + "}"
        }
    }
}
