/// A service or pod reached at its own origin: `http://[<port>.]<name>.<namespace>.svc.localhost:8001/` (or
/// `.pod.localhost`), with `https--<port>` (or `http--<port>`) choosing the scheme the apiserver uses to reach it.
///
/// Every path on such a host goes to this target's proxy subresource and nowhere else, so a dashboard's JavaScript
/// cannot use the proxy's credentials against the API, and each target has its own cookies and storage.
struct ProxyTarget: Hashable, Sendable {
    enum Kind: String, Sendable {
        case service = "svc"
        case pod = "pod"

        /// The resource name in API paths.
        var resource: String { self == .service ? "services" : "pods" }
    }

    var kind: Kind
    var namespace: String
    var name: String
    /// Port name or number, `nil` for the default port.
    var port: String?
    /// `https` or `http` when the host asked for it (`https--<port>`), `nil` otherwise.
    var scheme: String?

    /// `/api/v1/namespaces/<namespace>/<services|pods>/[<scheme>:]<name>[:<port>]/proxy`, without a trailing slash:
    /// the prefix every upstream path of this target starts with, as the apiserver writes it into HTML.
    var proxyPath: String {
        var segment = name
        if let scheme { segment = scheme + ":" + segment }
        if let port { segment += ":" + port }
        return "/api/v1/namespaces/\(namespace)/\(kind.resource)/\(segment)/proxy"
    }

    /// The host name that addresses this target (lower case, without a port).
    var hostName: String {
        var labels: [String] = []
        if let port { labels.append(scheme.map { "\($0)--\(port)" } ?? port) }
        labels += [name, namespace, kind.rawValue, "localhost"]
        return labels.joined(separator: ".")
    }
}

/// What a request's host says about its target, decided once per distinct `Host` value.
enum HostClass: Equatable, Sendable {
    /// An ordinary host (`localhost`, `127.0.0.1`, …): path-form routing, kubectl's rules.
    case ordinary(HostAuthority)
    /// A `*.svc.localhost` or `*.pod.localhost` name.
    case target(ProxyTarget, HostAuthority)
    /// Not a valid `Host`, or a malformed service/pod name: 400, then the connection closes.
    case invalid(String)

    /// Classifies a `Host` value (the header, or an absolute-form target's authority).
    static func classify(_ value: String) -> HostClass {
        switch HostAuthority.parse(value) {
        case .failure(let error):
            return .invalid("invalid Host \(jsonQuoted(value)): \(error.reason)")
        case .success(let authority):
            switch TargetHostName.parse(authority.host) {
            case .notATargetName: return .ordinary(authority)
            case .target(let target): return .target(target, authority)
            case .invalid(let reason): return .invalid("invalid Host \(jsonQuoted(value)): \(reason)")
            }
        }
    }
}

/// The parser for `[<port>.]<name>.<namespace>.(svc|pod).localhost`.
///
/// Decisions: letters are folded to lower case (DNS names are case-insensitive, and Kubernetes names are lower
/// case); a trailing dot is refused (the dotted name is a separate origin in browsers, with its own cookies: one
/// target gets exactly one origin); every label must be a DNS-1123 label (1–63 of `a-z`, `0-9`, `-`, starting and
/// ending with a letter or digit), so a pod whose name has a dot cannot be reached this way (use the path form).
enum TargetHostName {
    enum Result: Equatable {
        case notATargetName
        case target(ProxyTarget)
        case invalid(String)
    }

    static let usage = "use <service>.<namespace>.svc.localhost, <port>.<service>.<namespace>.svc.localhost or "
        + "https--<port>.<service>.<namespace>.svc.localhost (pod.localhost for pods)"

    static func parse(_ host: Substring) -> Result {
        var name = host.lowercased()
        let dotted = name.hasSuffix(".")
        if dotted { name.removeLast() }
        let kind: ProxyTarget.Kind
        if name == "svc.localhost" || name.hasSuffix(".svc.localhost") {
            kind = .service
        } else if name == "pod.localhost" || name.hasSuffix(".pod.localhost") {
            kind = .pod
        } else {
            return .notATargetName
        }
        if dotted { return .invalid("a trailing dot is not supported; \(usage)") }
        let suffixLength = ".svc.localhost".utf8.count
        guard name.utf8.count > suffixLength else { return .invalid("no \(kind.displayName) name; \(usage)") }
        let labels = name.dropLast(suffixLength).split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            if label.isEmpty { return .invalid("an empty label (\"..\"); \(usage)") }
            if label.utf8.count > 63 { return .invalid("the label \"\(label)\" is longer than 63 characters") }
        }
        guard labels.count == 2 || labels.count == 3 else {
            return .invalid("\(labels.count) labels before .\(kind.rawValue).localhost, expected 2 or 3; \(usage)")
        }
        let objectName = labels[labels.count - 2], namespace = labels[labels.count - 1]
        for (label, what) in [(objectName, kind.displayName + " name"), (namespace, "namespace")]
        where !isDNSLabel(label) {
            return .invalid("\(what) \"\(label)\" is not a DNS label (a-z, 0-9 and \"-\", starting and ending with a letter or digit)")
        }
        var target = ProxyTarget(kind: kind, namespace: String(namespace), name: String(objectName))
        if labels.count == 3 {
            var port = labels[0]
            for scheme in ["https", "http"] where port.hasPrefix(scheme + "--") {
                target.scheme = scheme
                port = port.dropFirst(scheme.utf8.count + 2)
                break
            }
            if let reason = portProblem(port) { return .invalid(reason) }
            target.port = String(port)
        }
        return .target(target)
    }

    /// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (checked by the caller).
    static func isDNSLabel(_ label: Substring) -> Bool {
        guard let first = label.utf8.first, let last = label.utf8.last, first != UInt8(ascii: "-"),
            last != UInt8(ascii: "-")
        else { return false }
        return label.utf8.allSatisfy { $0.isLowerAlphanumeric || $0 == UInt8(ascii: "-") }
    }

    /// `nil` for a port number (1–65535, no leading zero) or a Kubernetes port name (IANA_SVC_NAME: 1–15 of
    /// `a-z0-9-`, at least one letter, no `-` at either end, no `--`).
    static func portProblem(_ port: Substring) -> String? {
        if port.isEmpty { return "an empty port; \(usage)" }
        if port.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard port.first != "0", port.utf8.count <= 5, let n = Int(port), n <= 65535 else {
                return "the port \"\(port)\" is not a port number (1-65535)"
            }
            return nil
        }
        let hasLetter = port.utf8.contains { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }
        let valid = port.utf8.count <= 15 && hasLetter && isDNSLabel(port) && !port.containsText("--")
        return valid ? nil : "the port \"\(port)\" is not a port name (1-15 of a-z, 0-9 and \"-\") or number"
    }
}

extension ProxyTarget.Kind {
    var displayName: String { self == .service ? "service" : "pod" }
}

extension UInt8 {
    var isLowerAlphanumeric: Bool {
        (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z")) || (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9"))
    }
}
