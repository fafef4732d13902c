/// Finds, reads and merges kubeconfig files and resolves the selected context into an `UpstreamTarget`, following
/// client-go's `clientcmd` rules (see docs/KUBECTL-PROXY.md §2.1–2.3). Pure apart from file reads.
public enum KubeconfigLoader {
    /// Loads the kubeconfig and resolves it, with kubectl's precedence.
    ///
    /// Files: `explicitPath` (`--kubeconfig`; must exist, no merging), else `$KUBECONFIG` (":"-separated, empty and
    /// duplicate entries skipped, missing files skipped, the rest merged first-wins), else `$HOME/.kube/config` if
    /// it exists. Then the context (`selection.context`, else `current-context`), its cluster and user (or
    /// `selection.cluster`/`.user`), then `overrides`, then validation.
    ///
    /// - Parameters:
    ///   - explicitPath: `--kubeconfig`. Relative paths are resolved against the current directory.
    ///   - environment: Where `KUBECONFIG` and `HOME` are read (usually `ProcessInfo.processInfo.environment`).
    ///   - selection: `--context`, `--cluster`, `--user`.
    ///   - overrides: The other kubectl global flags.
    /// - Throws: `ConfigError`. Kind `.noConfiguration` when no kubeconfig file exists (or the files hold nothing)
    ///   and neither `--server` nor a selection flag was given: the caller may then try `InClusterConfig.load`.
    public static func load(
        explicitPath: String?,
        environment: [String: String],
        selection: KubeconfigSelection,
        overrides: KubeconfigOverrides
    ) throws(ConfigError) -> UpstreamTarget {
        try load(
            explicitPath: explicitPath, environment: environment, selection: selection, overrides: overrides,
            currentDirectory: ConfigFiles.currentDirectory)
    }

    /// `load` with an explicit working directory (for relative `--kubeconfig`, `KUBECONFIG` entries and override
    /// paths).
    static func load(
        explicitPath: String?,
        environment: [String: String],
        selection: KubeconfigSelection,
        overrides: KubeconfigOverrides,
        currentDirectory: String
    ) throws(ConfigError) -> UpstreamTarget {
        let found = try loadFiles(
            explicitPath: explicitPath, environment: environment, currentDirectory: currentDirectory)
        let noFlags = selection.context.nonEmpty == nil && selection.cluster.nonEmpty == nil
            && selection.user.nonEmpty == nil && overrides.server.nonEmpty == nil
        if found.config.isEmpty && noFlags {
            let message: String
            if found.config.files.isEmpty {
                message = "no kubeconfig found (looked for \(found.lookedFor.joined(separator: ", ")))"
            } else {
                message = "no clusters, users or contexts in \(found.config.files.joined(separator: ", "))"
            }
            throw ConfigError(kind: .noConfiguration, message: message, lookedFor: found.lookedFor)
        }
        return try resolve(
            found.config, selection: selection, overrides: overrides, currentDirectory: currentDirectory)
    }

    /// The files found and merged, plus a human-readable list of what was looked for.
    public struct LoadedFiles: Sendable, Equatable {
        public var config: Kubeconfig
        public var lookedFor: [String]
    }

    /// Finds and merges the kubeconfig files without resolving anything. `config.files` lists the files read
    /// (empty if none exists). `currentDirectory` (default: the process's) is the base for relative paths.
    public static func loadFiles(
        explicitPath: String?,
        environment: [String: String],
        currentDirectory: String? = nil
    ) throws(ConfigError) -> LoadedFiles {
        let currentDirectory = currentDirectory ?? ConfigFiles.currentDirectory
        if let explicit = explicitPath.nonEmpty {
            let path = ConfigFiles.resolve(explicit, against: currentDirectory)
            let config = try readFile(path, mustExist: true) ?? Kubeconfig()
            return LoadedFiles(config: config, lookedFor: [path])
        }
        if let list = environment["KUBECONFIG"].nonEmpty {
            var seen = Set<String>()
            var paths: [String] = []
            for entry in list.split(separator: ":", omittingEmptySubsequences: true) {
                let path = ConfigFiles.resolve(String(entry), against: currentDirectory)
                if seen.insert(path).inserted { paths.append(path) }
            }
            var merged = Kubeconfig()
            for path in paths {
                guard let config = try readFile(path, mustExist: false) else { continue }
                merged.merge(later: config)
            }
            return LoadedFiles(config: merged, lookedFor: paths.map { "\($0) (from KUBECONFIG)" })
        }
        guard let home = environment["HOME"].nonEmpty else {
            return LoadedFiles(config: Kubeconfig(), lookedFor: ["$HOME/.kube/config (HOME is not set)"])
        }
        let path = ConfigFiles.resolve(".kube/config", against: home)
        let config = try readFile(path, mustExist: false) ?? Kubeconfig()
        return LoadedFiles(config: config, lookedFor: [path])
    }

    /// Reads and parses one file; `nil` if it does not exist and `mustExist` is false.
    static func readFile(_ path: String, mustExist: Bool) throws(ConfigError) -> Kubeconfig? {
        if !mustExist, ConfigFiles.existence(path) == .missing { return nil }
        switch ConfigFiles.read(path) {
        case .success(let bytes):
            return try Kubeconfig.parse(bytes, file: path)
        case .failure(let failure):
            let kind: ConfigError.Kind = ConfigFiles.existence(path) == .missing ? .fileNotFound : .unreadableFile
            throw ConfigError(kind: kind, file: path, message: "cannot read: \(failure.reason)")
        }
    }

    /// Selects a context, cluster and user in an already merged configuration, applies the overrides and validates
    /// the result.
    ///
    /// - Parameter currentDirectory: Base for relative paths in `overrides` (default: the process's).
    public static func resolve(
        _ config: Kubeconfig,
        selection: KubeconfigSelection,
        overrides: KubeconfigOverrides,
        currentDirectory: String? = nil
    ) throws(ConfigError) -> UpstreamTarget {
        var resolver = TargetResolver(
            config: config, overrides: overrides, currentDirectory: currentDirectory ?? ConfigFiles.currentDirectory)
        try resolver.select(selection)
        resolver.applyOverrides()
        return try resolver.build()
    }
}
