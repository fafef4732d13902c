/// Why a kubeconfig, the in-cluster environment or the command-line overrides could not produce an `UpstreamTarget`.
///
/// The description names the file and the key path inside it, kubectl-style:
///
///     kubeconfig /home/me/.kube/config: users[alice].user.client-key-data: not valid base64
///     kubeconfig /x/y: contexts[dev].context.cluster: cluster "nope" not found
///     kubeconfig /x/y: line 3, column 5: mapping values are not allowed in this context
///
/// It never contains a secret value (token, password, key or certificate data, auth-provider config): messages are
/// built only from names, paths and fixed texts.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The category of a `ConfigError`; compare with `==` (`error.kind == .noConfiguration`).
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case noConfiguration, notInCluster, fileNotFound, unreadableFile, syntax, invalidValue, notFound, conflict
        }
        private let base: Base

        /// No kubeconfig file exists where one was looked for (and no `--server` was given). The caller may fall
        /// back to the in-cluster configuration; `ConfigError.lookedFor` lists what was tried.
        public static let noConfiguration = Kind(base: .noConfiguration)
        /// `KUBERNETES_SERVICE_HOST`/`_PORT` are not set, or the service-account token is missing.
        public static let notInCluster = Kind(base: .notInCluster)
        /// The explicit `--kubeconfig` file does not exist.
        public static let fileNotFound = Kind(base: .fileNotFound)
        /// A file (kubeconfig, CA, client certificate or key, token file) exists but cannot be read.
        public static let unreadableFile = Kind(base: .unreadableFile)
        /// YAML/JSON syntax error.
        public static let syntax = Kind(base: .syntax)
        /// A field has the wrong type, a bad value, or a required field is missing.
        public static let invalidValue = Kind(base: .invalidValue)
        /// A named context, cluster or user does not exist.
        public static let notFound = Kind(base: .notFound)
        /// Settings that must not be combined (CA with insecure, token with basic auth, file with data, ...).
        public static let conflict = Kind(base: .conflict)

        public var description: String { base.rawValue }
    }

    public let kind: Kind
    /// The kubeconfig file concerned (absolute), a ":"-joined list when the problem concerns the merged files, or
    /// `nil` for command-line flags and the in-cluster environment.
    public let file: String?
    /// Where in the file, e.g. `users[alice].user.client-key-data`, `current-context`, `--cluster`, `line 3, column 5`.
    public let keyPath: String?
    /// What is wrong. Never contains a secret value.
    public let message: String
    /// For `.noConfiguration`: every location that was looked for, in order.
    public let lookedFor: [String]

    public init(kind: Kind, file: String? = nil, keyPath: String? = nil, message: String, lookedFor: [String] = []) {
        self.kind = kind
        self.file = file
        self.keyPath = keyPath
        self.message = message
        self.lookedFor = lookedFor
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append("kubeconfig \(file)") }
        if let keyPath { parts.append(keyPath) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}
