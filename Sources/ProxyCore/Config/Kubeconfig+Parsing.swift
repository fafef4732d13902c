import FoundationEssentials

extension Kubeconfig {
    /// Decodes one kubeconfig file (YAML or JSON).
    ///
    /// Like client-go, a syntax error, a wrongly typed field or invalid base64 anywhere in the file fails the whole
    /// file; semantic checks (missing server, conflicting settings) happen only for the selected stanzas, at
    /// resolution. Unknown fields, `preferences` and `extensions` are ignored.
    ///
    /// - Parameters:
    ///   - bytes: The file's content (UTF-8).
    ///   - file: The file's absolute path: recorded as every stanza's `origin`; relative paths inside the file are
    ///     resolved against its directory.
    /// - Throws: `ConfigError` naming `file` and the key path (or line and column for syntax errors).
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> Kubeconfig {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw ConfigError(kind: .syntax, file: file, message: "not valid UTF-8")
        }
        let root: YAMLNode?
        do {
            root = try YAMLParser.compose(bytes)
        } catch {
            throw ConfigError(kind: .syntax, file: file, keyPath: error.position, message: error.message)
        }
        var config = Kubeconfig(files: [file])
        guard let root, !root.isNull else { return config }
        let reader = NodeReader(file: file)
        guard root.mapping != nil else {
            throw ConfigError(kind: .invalidValue, file: file, message: "expected a mapping at the top level")
        }

        config.currentContext = try reader.string(root["current-context"], "current-context")
        if config.currentContext != nil { config.currentContextOrigin = file }

        for (name, node, path) in try reader.namedList(root, "clusters", inner: "cluster") {
            config.clusters[name] = try reader.cluster(node, path)
        }
        for (name, node, path) in try reader.namedList(root, "users", inner: "user") {
            config.users[name] = try reader.user(node, path)
        }
        for (name, node, path) in try reader.namedList(root, "contexts", inner: "context") {
            config.contexts[name] = try reader.context(node, path)
        }
        return config
    }
}

/// Typed access to a YAML node tree, producing `ConfigError`s with the key path.
private struct NodeReader {
    let file: String
    var directory: String { ConfigFiles.directory(of: file) }

    func invalid(_ path: String, _ message: String) -> ConfigError {
        ConfigError(kind: .invalidValue, file: file, keyPath: path, message: message)
    }

    /// `nil` for absent and null nodes.
    func present(_ node: YAMLNode?) -> YAMLNode? {
        guard let node, !node.isNull else { return nil }
        return node
    }

    /// A scalar as a string; `nil` when absent, null or "" (client-go treats "" as unset).
    func string(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> String? {
        guard let node = present(node) else { return nil }
        guard let scalar = node.scalar else { throw invalid(path, "expected a string") }
        return scalar.isEmpty ? nil : scalar
    }

    func bool(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> Bool {
        guard let node = present(node) else { return false }
        guard let value = node.bool else {
            throw invalid(path, "expected true or false")
        }
        return value
    }

    func strings(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> [String] {
        guard let node = present(node) else { return [] }
        guard let sequence = node.sequence else { throw invalid(path, "expected a list of strings") }
        var out: [String] = []
        for (index, item) in sequence.enumerated() {
            guard let scalar = item.scalar else { throw invalid("\(path)[\(index)]", "expected a string") }
            out.append(scalar)
        }
        return out
    }

    func mapping(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> [YAMLPair]? {
        guard let node = present(node) else { return nil }
        guard let mapping = node.mapping else { throw invalid(path, "expected a mapping") }
        return mapping
    }

    /// base64 (standard alphabet, padded; CR and LF ignored, like Go's decoder) → bytes; `nil` when unset.
    func base64(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> [UInt8]? {
        guard let text = try string(node, path) else { return nil }
        let compact = text.filter { $0 != "\n" && $0 != "\r" }
        guard let data = Data(base64Encoded: compact) else { throw invalid(path, "not valid base64") }
        return data.isEmpty ? nil : [UInt8](data)
    }

    func path(_ node: YAMLNode?, _ path: String) throws(ConfigError) -> String? {
        try string(node, path).map { ConfigFiles.resolve($0, against: directory) }
    }

    /// `key: [{name: n, <inner>: {...}}]` → (name, inner node, "key[n].inner") in file order. Duplicate names are
    /// an error, as in client-go's conversion.
    func namedList(_ root: YAMLNode, _ key: String, inner: String) throws(ConfigError) -> [(String, YAMLNode?, String)] {
        guard let node = present(root[key]) else { return [] }
        guard let sequence = node.sequence else { throw invalid(key, "expected a list") }
        var seen = Set<String>()
        var out: [(String, YAMLNode?, String)] = []
        for (index, item) in sequence.enumerated() {
            guard item.mapping != nil else { throw invalid("\(key)[\(index)]", "expected a mapping") }
            guard let name = try string(item["name"], "\(key)[\(index)].name") else {
                throw invalid("\(key)[\(index)].name", "missing")
            }
            guard seen.insert(name).inserted else { throw invalid("\(key)[\(index)]", "duplicate name \"\(name)\"") }
            let innerPath = "\(key)[\(name)].\(inner)"
            _ = try mapping(item[inner], innerPath)
            out.append((name, present(item[inner]), innerPath))
        }
        return out
    }

    func cluster(_ node: YAMLNode?, _ p: String) throws(ConfigError) -> KubeconfigCluster {
        var cluster = KubeconfigCluster(origin: file)
        guard let node else { return cluster }
        cluster.server = try string(node["server"], "\(p).server")
        cluster.certificateAuthority = try path(node["certificate-authority"], "\(p).certificate-authority")
        cluster.certificateAuthorityData = try base64(
            node["certificate-authority-data"], "\(p).certificate-authority-data")
        cluster.insecureSkipTLSVerify = try bool(node["insecure-skip-tls-verify"], "\(p).insecure-skip-tls-verify")
        cluster.tlsServerName = try string(node["tls-server-name"], "\(p).tls-server-name")
        cluster.proxyURL = try string(node["proxy-url"], "\(p).proxy-url")
        cluster.disableCompression = try bool(node["disable-compression"], "\(p).disable-compression")
        return cluster
    }

    func context(_ node: YAMLNode?, _ p: String) throws(ConfigError) -> KubeconfigContext {
        var context = KubeconfigContext(origin: file)
        guard let node else { return context }
        context.cluster = try string(node["cluster"], "\(p).cluster")
        context.user = try string(node["user"], "\(p).user")
        context.namespace = try string(node["namespace"], "\(p).namespace")
        return context
    }

    func user(_ node: YAMLNode?, _ p: String) throws(ConfigError) -> KubeconfigUser {
        var user = KubeconfigUser(origin: file)
        guard let node else { return user }
        user.clientCertificate = try path(node["client-certificate"], "\(p).client-certificate")
        user.clientCertificateData = try base64(node["client-certificate-data"], "\(p).client-certificate-data")
        user.clientKey = try path(node["client-key"], "\(p).client-key")
        user.clientKeyData = try base64(node["client-key-data"], "\(p).client-key-data")
        user.token = try string(node["token"], "\(p).token")
        user.tokenFile = try path(node["tokenFile"], "\(p).tokenFile")
        user.username = try string(node["username"], "\(p).username")
        user.password = try string(node["password"], "\(p).password")
        user.impersonate = try string(node["as"], "\(p).as")
        user.impersonateUID = try string(node["as-uid"], "\(p).as-uid")
        user.impersonateGroups = try strings(node["as-groups"], "\(p).as-groups")
        if let extra = try mapping(node["as-user-extra"], "\(p).as-user-extra") {
            for (key, value) in extra.map({ ($0.key, $0.value) }) {
                guard let name = key.scalar else { throw invalid("\(p).as-user-extra", "expected string keys") }
                user.impersonateUserExtra[name] = try strings(value, "\(p).as-user-extra[\(name)]")
            }
        }
        if let provider = present(node["auth-provider"]) {
            let pp = "\(p).auth-provider"
            _ = try mapping(provider, pp)
            let name = try string(provider["name"], "\(pp).name") ?? ""
            var config: [String: String] = [:]
            if let map = try mapping(provider["config"], "\(pp).config") {
                for (key, value) in map.map({ ($0.key, $0.value) }) {
                    guard let k = key.scalar else { throw invalid("\(pp).config", "expected string keys") }
                    config[k] = try string(value, "\(pp).config[\(k)]") ?? ""
                }
            }
            user.authProvider = AuthProviderConfig(name: name, config: config)
        }
        if let exec = present(node["exec"]) {
            user.exec = try self.exec(exec, "\(p).exec")
        }
        return user
    }

    func exec(_ node: YAMLNode, _ p: String) throws(ConfigError) -> KubeconfigExec {
        _ = try mapping(node, p)
        var exec = KubeconfigExec()
        exec.apiVersion = try string(node["apiVersion"], "\(p).apiVersion")
        if let command = try string(node["command"], "\(p).command") {
            // client-go resolves the command only when it contains a path separator; bare names use $PATH.
            exec.command = command.contains("/") ? ConfigFiles.resolve(command, against: directory) : command
        }
        exec.args = try strings(node["args"], "\(p).args")
        if let env = present(node["env"]) {
            guard let sequence = env.sequence else { throw invalid("\(p).env", "expected a list") }
            for (index, item) in sequence.enumerated() {
                let ip = "\(p).env[\(index)]"
                _ = try mapping(item, ip)
                let name = try string(item["name"], "\(ip).name") ?? ""
                let value = try string(item["value"], "\(ip).value") ?? ""
                exec.env.append(ExecConfig.EnvVar(name: name, value: value))
            }
        }
        exec.installHint = try string(node["installHint"], "\(p).installHint")
        exec.provideClusterInfo = try bool(node["provideClusterInfo"], "\(p).provideClusterInfo")
        exec.interactiveMode = try string(node["interactiveMode"], "\(p).interactiveMode")
        return exec
    }
}
