/// Rewrites a `Location` that points at the apiserver itself (absolute URL with its scheme, host and port) into a
/// path on the proxy, so a browser following a redirect from a proxied dashboard stays on the proxy instead of
/// leaking to (and failing against) the real apiserver. kubectl proxy passes such headers through unchanged.
///
/// Other locations (relative paths, other hosts) are left alone.
struct LocationRewriter: Sendable {
    let target: UpstreamTarget
    /// The proxy's API prefix when the router strips it (kubectl does not strip prefixes starting with `/api`).
    let publicPrefix: String
    /// The server path proxyd adds upstream (`--append-server-path`), removed again on the way back.
    let serverBasePath: String

    init(target: UpstreamTarget, router: PathRouter) {
        self.target = target
        let stripped = !router.apiPrefix.hasPrefix("/api")
        var prefix = stripped ? router.apiPrefix : "/"
        while prefix.hasSuffix("/") { prefix.removeLast() }
        publicPrefix = prefix
        serverBasePath = router.serverBasePath
    }

    func rewrite(_ location: String) -> String? {
        apiserverPath(of: location, anyScheme: false).map { publicPrefix + $0 }
    }

    /// The path (query included) that an absolute URL names on the apiserver, without `--append-server-path`'s
    /// base path; `nil` when the URL names another origin. With `anyScheme`, `http://` and `https://` both count
    /// (a backend that was given the apiserver's Host builds its URLs with its own scheme).
    func apiserverPath(of location: String, anyScheme: Bool) -> String? {
        guard let rest = stripApiserverOrigin(location, anyScheme: anyScheme) else { return nil }
        var path = rest.isEmpty ? "/" : rest
        if !path.hasPrefix("/") {
            guard path.hasPrefix("?") else { return nil }
            path = "/" + path
        }
        if !serverBasePath.isEmpty, path.hasPrefix(serverBasePath) {
            let after = path.dropFirst(serverBasePath.count)
            if after.isEmpty || after.hasPrefix("/") || after.hasPrefix("?") {
                path = after.hasPrefix("/") ? String(after) : "/" + after
            }
        }
        return path
    }

    /// The part after `scheme://authority` when the URL names the apiserver, else `nil`.
    private func stripApiserverOrigin(_ location: String, anyScheme: Bool) -> String? {
        let lower = location.lowercased()
        let schemes = anyScheme ? ["https://", "http://"] : [target.scheme.lowercased() + "://"]
        guard let scheme = schemes.first(where: { lower.hasPrefix($0) }) else { return nil }
        let afterScheme = location.dropFirst(scheme.count)
        let end = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        let authority = afterScheme[..<end].lowercased()
        let defaultPort: UInt16 = target.scheme == "https" ? 443 : 80
        var names = [target.authority.lowercased()]
        let host = target.host.contains(":") ? "[\(target.host.lowercased())]" : target.host.lowercased()
        names.append("\(host):\(target.port)")
        if target.port == defaultPort { names.append(host) }
        guard names.contains(authority) else { return nil }
        return String(afterScheme[end...])
    }
}
