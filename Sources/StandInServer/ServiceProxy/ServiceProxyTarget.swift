import Foundation

/// A request for the proxy subresource of a service or pod:
/// `/api/v1/namespaces/<ns>/services/[scheme:]<name>[:<port>]/proxy[/<path>]` (and `pods`).
struct ServiceProxyTarget: Equatable {
    enum Kind: String { case services, pods }

    var kind: Kind
    var namespace: String
    /// "", "http" or "https".
    var scheme: String
    var name: String
    /// Port name or number as written, "" when none.
    var port: String
    /// The request path up to and including `/proxy`, as sent (what the apiserver calls PathPrepend).
    var prefix: String
    /// The still-escaped rest after the prefix: "", "/" or "/static/app.js".
    var path: String

    /// The id as written in the URL (`https:name:port`), for messages.
    var id: String {
        [scheme, name, port].enumerated().filter { $0.offset == 1 || !$0.element.isEmpty }.map(\.element).joined(separator: ":")
    }

    static func parse(rawPath: String) -> ServiceProxyTarget? {
        let segments = rawPath.split(separator: "/", omittingEmptySubsequences: false)
        // "", "api", "v1", "namespaces", ns, kind, id, "proxy", rest...
        guard segments.count >= 8, segments[0].isEmpty, segments[1] == "api", segments[2] == "v1",
            segments[3] == "namespaces", let kind = Kind(rawValue: String(segments[5])), segments[7] == "proxy"
        else { return nil }
        let namespace = String(segments[4]).removingPercentEncoding ?? String(segments[4])
        let id = String(segments[6]).removingPercentEncoding ?? String(segments[6])
        // utilnet.SplitSchemeNamePort: "name", "name:port" or "scheme:name:port".
        let parts = id.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var scheme = "", name = "", port = ""
        switch parts.count {
        case 1: name = parts[0]
        case 2: (name, port) = (parts[0], parts[1])
        case 3: (scheme, name, port) = (parts[0], parts[1], parts[2])
        default: return nil
        }
        guard !namespace.isEmpty, !name.isEmpty, ["", "http", "https"].contains(scheme) else { return nil }
        let prefix = segments[0...7].joined(separator: "/")
        return ServiceProxyTarget(
            kind: kind, namespace: namespace, scheme: scheme, name: name, port: port, prefix: prefix,
            path: String(rawPath.dropFirst(prefix.count)))
    }
}

/// Where a proxied request goes: a backend listening on loopback (a real apiserver refuses loopback endpoints; the
/// stand-in dials nothing else).
struct ProxyBackend: Equatable, Sendable {
    var scheme: String
    var host: String
    var port: Int

    var hostPort: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

enum ProxyResolution: Equatable {
    /// No loopback backend behind the target (it is not in the store, or has no pod with a loopback IP): the
    /// stand-in answers with its echo, as it always has for proxy paths.
    case echo
    case backend(ProxyBackend)
    /// What the apiserver answers when the target exists but cannot be reached (503 with a Status).
    case unavailable(String)
}

extension ObjectStore {
    /// Resolves a proxy target the way the apiserver's `ResourceLocation` does, over the stand-in's objects: a
    /// service's selector picks its pods, a port number is mapped to the service port's name, the port name (""
    /// for an unnamed port) picks the service port, and its `targetPort` (a number, or a container port's name)
    /// gives the pod's port. A pod without a port uses its first declared container port. Only pods whose
    /// `status.podIP` is a loopback address count as backends, and only their declared container ports are dialled.
    func resolve(_ target: ServiceProxyTarget) -> ProxyResolution {
        switch target.kind {
        case .pods:
            guard let pod = get(.pods, namespace: target.namespace, name: target.name), let ip = Self.loopbackIP(of: pod) else {
                return .echo
            }
            let declared = Self.containerPorts(of: pod)
            let port: Int
            if target.port.isEmpty {
                port = declared.first?.number ?? 80
            } else if let number = Int(target.port) {
                port = number
            } else {
                return .unavailable("error trying to reach service: dial tcp: address \(ip):\(target.port): invalid port")
            }
            guard declared.contains(where: { $0.number == port }) else {
                return .unavailable(Self.undeclared(ip: ip, port: port))
            }
            return .backend(ProxyBackend(scheme: target.scheme.isEmpty ? "http" : target.scheme, host: ip, port: port))

        case .services:
            guard let service = get(.services, namespace: target.namespace, name: target.name) else { return .echo }
            let pods = selectedPods(of: service, namespace: target.namespace).filter { Self.loopbackIP(of: $0) != nil }
            guard let pod = pods.first, let ip = Self.loopbackIP(of: pod) else { return .echo }
            var servicePorts: [JSON] = []
            if case .array(let items) = service["spec"]?["ports"] ?? .null { servicePorts = items }
            var portName = target.port
            if let number = Int(target.port) {
                guard let match = servicePorts.first(where: { $0["port"] == .int(number) }) else {
                    return .unavailable("no service port \(number) found for service \"\(target.name)\"")
                }
                portName = match["name"]?.stringValue ?? ""
            }
            guard let servicePort = servicePorts.first(where: { ($0["name"]?.stringValue ?? "") == portName }) else {
                return .unavailable("no endpoints available for service \"\(target.id)\"")
            }
            let declared = Self.containerPorts(of: pod)
            let port: Int
            switch servicePort["targetPort"] ?? .null {
            case .int(let number):
                port = number
            case .string(let name):
                guard let named = declared.first(where: { $0.name == name }) else {
                    return .unavailable("no endpoints available for service \"\(target.id)\"")
                }
                port = named.number
            default:
                return .unavailable("no endpoints available for service \"\(target.id)\"")
            }
            guard declared.contains(where: { $0.number == port }) else {
                return .unavailable(Self.undeclared(ip: ip, port: port))
            }
            return .backend(ProxyBackend(scheme: target.scheme.isEmpty ? "http" : target.scheme, host: ip, port: port))
        }
    }

    /// The pods in `namespace` whose labels include every entry of the service's `spec.selector` (none without one).
    func selectedPods(of service: JSON, namespace: String) -> [JSON] {
        guard case .object(let selector) = service["spec"]?["selector"] ?? .null, !selector.isEmpty else { return [] }
        return list(.pods, namespace: namespace).items.filter { pod in
            selector.allSatisfy { pod["metadata"]?["labels"]?[$0.key] == $0.value }
        }
    }

    private static func undeclared(ip: String, port: Int) -> String {
        "error trying to reach service: the stand-in dials only the declared container ports of a loopback pod, not \(ip):\(port)"
    }

    static func loopbackIP(of pod: JSON) -> String? {
        guard let ip = pod["status"]?["podIP"]?.stringValue else { return nil }
        return ip == "::1" || ip.hasPrefix("127.") ? ip : nil
    }

    static func containerPorts(of pod: JSON) -> [(name: String, number: Int)] {
        guard case .array(let containers) = pod["spec"]?["containers"] ?? .null else { return [] }
        return containers.flatMap { container -> [(name: String, number: Int)] in
            guard case .array(let ports) = container["ports"] ?? .null else { return [] }
            return ports.compactMap { port in
                guard case .int(let number) = port["containerPort"] ?? .null else { return nil }
                return (port["name"]?.stringValue ?? "", number)
            }
        }
    }
}
