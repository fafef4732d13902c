/// Response headers of a request on a service or pod host, rewritten so the browser stays on that host.
///
/// - `Location`: a path, the apiserver's own origin (`http://` or `https://`, which is also the Host the backend
///   was given) plus a path, become a path on the service host, with this target's proxy path removed when the
///   apiserver (or the backend) put it there: `/api/v1/namespaces/ns/services/web/proxy/login` → `/login`. Other
///   locations (relative references, other hosts, `//host/…`) pass unchanged.
/// - `Set-Cookie`: any `Domain` attribute is removed, so the cookie belongs to the service host alone (a `Domain`
///   naming the service host itself would also cover its subdomains, which are the service's other ports); a
///   `Path` under this target's proxy path loses that prefix, as `Location` does.
///
/// The path form (`/api/v1/…/proxy/…`) keeps kubectl's behaviour (`LocationRewriter` only).
struct TargetResponseRewriter {
    let target: ProxyTarget
    let locations: LocationRewriter

    func rewrite(_ headers: inout HTTPHeaders) {
        var out = HTTPHeaders()
        var changed = false
        for field in headers.fields {
            var value = field.value
            if field.name.equalsIgnoringASCIICase("location"), let new = location(value), new != value {
                value = new
                changed = true
            } else if field.name.equalsIgnoringASCIICase("set-cookie"), let new = setCookie(value) {
                value = new
                changed = true
            }
            out.add(name: field.name, value: value)
        }
        if changed { headers = out }
    }

    /// The `Location` to send, or `nil` to leave it as it is.
    func location(_ value: String) -> String? {
        let path: String
        if value.hasPrefix("/") && !value.hasPrefix("//") {
            path = value
        } else if let onApiserver = locations.apiserverPath(of: value, anyScheme: true) {
            path = onApiserver
        } else {
            return nil
        }
        return withoutProxyPath(path) ?? path
    }

    /// `path` relative to the service host when it starts with this target's proxy path, else `nil`.
    func withoutProxyPath(_ path: String) -> String? {
        let prefix = target.proxyPath
        guard path.hasPrefix(prefix) else { return nil }
        let rest = path.dropFirst(prefix.count)
        if rest.isEmpty { return "/" }
        if rest.hasPrefix("/") { return String(rest) }
        if rest.hasPrefix("?") || rest.hasPrefix("#") { return "/" + rest }
        return nil
    }

    /// The `Set-Cookie` value without `Domain` and with its `Path` on the service host, or `nil` when unchanged.
    func setCookie(_ value: String) -> String? {
        let parts = value.split(separator: ";", omittingEmptySubsequences: false)
        guard parts.count > 1 else { return nil }
        var kept: [String] = [String(parts[0])]
        var changed = false
        for attribute in parts.dropFirst() {
            let trimmed = attribute.withoutSurroundingSpaces()
            let name = trimmed.split(separator: "=", maxSplits: 1).first.map { String($0).trimmingSpaces() } ?? ""
            if name.equalsIgnoringASCIICase("domain") {
                changed = true
                continue
            }
            if name.equalsIgnoringASCIICase("path"), let eq = trimmed.firstIndex(of: "="),
                let local = withoutProxyPath(trimmed[trimmed.index(after: eq)...].trimmingSpaces())
            {
                kept.append(" Path=" + local)
                changed = true
                continue
            }
            kept.append(String(attribute))
        }
        return changed ? kept.joined(separator: ";") : nil
    }
}
