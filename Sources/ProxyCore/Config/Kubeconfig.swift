/// One kubeconfig file, or several merged with client-go's rules, after YAML decoding.
///
/// Only what a proxy needs is kept; `preferences`, `extensions` and unknown fields are ignored. Every stanza
/// remembers the file it came from (`origin`, absolute), and relative paths inside it are already resolved against
/// that file's directory. `*-data` fields are already base64-decoded.
public struct Kubeconfig: Sendable, Equatable {
    public var clusters: [String: KubeconfigCluster]
    public var users: [String: KubeconfigUser]
    public var contexts: [String: KubeconfigContext]
    /// `current-context`; `nil` when unset or empty.
    public var currentContext: String?
    /// The file that set `current-context`.
    public var currentContextOrigin: String?
    /// The files this configuration was read from, in merge order.
    public var files: [String]

    public init(
        clusters: [String: KubeconfigCluster] = [:],
        users: [String: KubeconfigUser] = [:],
        contexts: [String: KubeconfigContext] = [:],
        currentContext: String? = nil,
        currentContextOrigin: String? = nil,
        files: [String] = []
    ) {
        self.clusters = clusters
        self.users = users
        self.contexts = contexts
        self.currentContext = currentContext
        self.currentContextOrigin = currentContextOrigin
        self.files = files
    }

    /// `true` when nothing usable was read (no stanza and no current context).
    public var isEmpty: Bool {
        clusters.isEmpty && users.isEmpty && contexts.isEmpty && currentContext == nil
    }

    /// Merges a later file into this one with client-go's first-wins rules: a named cluster, user or context that
    /// already exists is kept whole (the later entry is discarded, even fields the first left empty); a scalar such
    /// as `current-context` is taken from the later file only if no earlier file set it.
    public mutating func merge(later other: Kubeconfig) {
        clusters.merge(other.clusters) { first, _ in first }
        users.merge(other.users) { first, _ in first }
        contexts.merge(other.contexts) { first, _ in first }
        if currentContext == nil, let later = other.currentContext {
            currentContext = later
            currentContextOrigin = other.currentContextOrigin
        }
        files += other.files
    }
}

/// A `clusters[].cluster` stanza.
public struct KubeconfigCluster: Sendable, Equatable {
    public var origin: String
    public var server: String?
    /// Absolute path (resolved against the origin's directory).
    public var certificateAuthority: String?
    /// Decoded PEM bytes.
    public var certificateAuthorityData: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var tlsServerName: String?
    public var proxyURL: String?
    public var disableCompression: Bool

    public init(
        origin: String, server: String? = nil, certificateAuthority: String? = nil,
        certificateAuthorityData: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false, tlsServerName: String? = nil,
        proxyURL: String? = nil, disableCompression: Bool = false
    ) {
        self.origin = origin
        self.server = server
        self.certificateAuthority = certificateAuthority
        self.certificateAuthorityData = certificateAuthorityData
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.proxyURL = proxyURL
        self.disableCompression = disableCompression
    }
}

/// A `users[].user` stanza (client-go's `AuthInfo`). Contains secrets: its description redacts them.
public struct KubeconfigUser: Sendable, Equatable {
    public var origin: String
    /// Absolute path.
    public var clientCertificate: String?
    public var clientCertificateData: [UInt8]?
    /// Absolute path.
    public var clientKey: String?
    public var clientKeyData: [UInt8]?
    public var token: String?
    /// Absolute path.
    public var tokenFile: String?
    public var username: String?
    public var password: String?
    public var impersonate: String?
    public var impersonateUID: String?
    public var impersonateGroups: [String]
    public var impersonateUserExtra: [String: [String]]
    /// As written (validated only when the user is selected); `command` already resolved.
    public var exec: KubeconfigExec?
    public var authProvider: AuthProviderConfig?

    public init(origin: String) {
        self.origin = origin
        self.impersonateGroups = []
        self.impersonateUserExtra = [:]
    }
}

/// A `contexts[].context` stanza.
public struct KubeconfigContext: Sendable, Equatable {
    public var origin: String
    public var cluster: String?
    public var user: String?
    public var namespace: String?

    public init(origin: String, cluster: String? = nil, user: String? = nil, namespace: String? = nil) {
        self.origin = origin
        self.cluster = cluster
        self.user = user
        self.namespace = namespace
    }
}

/// `users[].user.exec` as written in the file. Validated into an `ExecConfig` only when its user is selected, like
/// client-go (a broken exec stanza in an unused user does not stop loading).
public struct KubeconfigExec: Sendable, Equatable {
    public var apiVersion: String?
    /// Resolved against the origin's directory when it contains a "/".
    public var command: String?
    public var args: [String]
    /// Entries without a name have `name == ""` (rejected when selected).
    public var env: [ExecConfig.EnvVar]
    public var installHint: String?
    public var provideClusterInfo: Bool
    public var interactiveMode: String?

    public init(
        apiVersion: String? = nil, command: String? = nil, args: [String] = [], env: [ExecConfig.EnvVar] = [],
        installHint: String? = nil, provideClusterInfo: Bool = false, interactiveMode: String? = nil
    ) {
        self.apiVersion = apiVersion
        self.command = command
        self.args = args
        self.env = env
        self.installHint = installHint
        self.provideClusterInfo = provideClusterInfo
        self.interactiveMode = interactiveMode
    }
}

/// `users[].user.exec`: a client-go exec credential plugin, validated (run by `ExecPlugin`).
public struct ExecConfig: Sendable, Equatable {
    public struct EnvVar: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public enum InteractiveMode: String, Sendable, Equatable {
        case never = "Never"
        case ifAvailable = "IfAvailable"
        case always = "Always"
    }

    /// `client.authentication.k8s.io/v1` or `/v1beta1` (not checked here; the plugin runner rejects others).
    public var apiVersion: String
    /// Absolute (resolved against the kubeconfig's directory) when the kubeconfig value contained a "/"; otherwise
    /// the bare name, to be looked up on `$PATH`.
    public var command: String
    /// Never resolved.
    public var args: [String]
    /// Added to the proxy's own environment. Values may be secrets: redacted in descriptions.
    public var env: [EnvVar]
    public var installHint: String?
    public var provideClusterInfo: Bool
    /// Defaulted to `.ifAvailable` for v1beta1 when unset, like client-go; required for other versions.
    public var interactiveMode: InteractiveMode

    public init(
        apiVersion: String, command: String, args: [String] = [], env: [EnvVar] = [], installHint: String? = nil,
        provideClusterInfo: Bool = false, interactiveMode: InteractiveMode
    ) {
        self.apiVersion = apiVersion
        self.command = command
        self.args = args
        self.env = env
        self.installHint = installHint
        self.provideClusterInfo = provideClusterInfo
        self.interactiveMode = interactiveMode
    }
}

/// `users[].user.auth-provider`. The config map usually holds tokens and client secrets: redacted in descriptions.
public struct AuthProviderConfig: Sendable, Equatable {
    public var name: String
    public var config: [String: String]
    public init(name: String, config: [String: String] = [:]) {
        self.name = name
        self.config = config
    }
}
