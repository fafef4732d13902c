/// The service index: what a person sees when their browser opens the proxy's root. Values in, HTML out.
struct ServiceIndex: Equatable, Sendable {
    struct Port: Equatable, Sendable {
        var name: String?
        var port: Int
        var protocolName: String
        var appProtocol: String?

        /// The label that addresses this port (its name, else its number).
        var label: String { name.flatMap { $0.isEmpty ? nil : $0 } ?? String(port) }

        /// Whether the apiserver should reach it over TLS: a port named `https` or `https-…`, an `appProtocol` of
        /// `https`, or port 443.
        var isHTTPS: Bool {
            let n = name ?? ""
            return n == "https" || n.hasPrefix("https-") || appProtocol == "https" || port == 443
        }

        /// The service proxy only carries TCP.
        var isProxied: Bool { protocolName == "TCP" }
    }

    struct Service: Equatable, Sendable {
        var name: String
        var type: String?
        var ports: [Port]
    }

    enum Listing: Equatable, Sendable {
        case services([Service])
        /// Listing was refused or failed: the apiserver's reason.
        case unavailable(String)
    }

    struct Namespace: Equatable, Sendable {
        var name: String
        var listing: Listing
    }

    var namespaces: [Namespace] = []
    /// Why not every namespace could be listed (namespaces themselves forbidden, too many, …).
    var notices: [String] = []
}

/// Who proxyd is talking to the cluster as, shown at the top of the page.
struct ServiceIndexIdentity: Equatable, Sendable {
    var context: String?
    var cluster: String?
    var user: String?
    var server: String
    var impersonating: String?

    init(target: UpstreamTarget) {
        context = target.contextName
        cluster = target.clusterName
        user = target.userName
        server = target.serverURL
        impersonating = target.credentials.impersonateUser
    }

    init(context: String?, cluster: String?, user: String?, server: String, impersonating: String? = nil) {
        self.context = context
        self.cluster = cluster
        self.user = user
        self.server = server
        self.impersonating = impersonating
    }
}

/// Renders the index: no JavaScript, no external assets, every name escaped, readable in a narrow window.
struct ServiceIndexPage {
    var identity: ServiceIndexIdentity
    var index: ServiceIndex
    /// The port of the Host the browser used (`nil`: none, i.e. 80), kept in the links to service hosts.
    var proxyPort: String?
    /// What the path form starts with on this proxy (`""`, or the `--api-prefix` when it is stripped).
    var pathPrefix: String

    func html() -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>proxyd: services</title>
            <style>\(Self.style)</style>
            </head>
            <body>
            <header><h1>Services</h1>
            <dl class="who">
            """
        func row(_ term: String, _ value: String?) {
            out += "<dt>\(term)</dt><dd>\(value.map(htmlEscaped) ?? "<i>none</i>")</dd>\n"
        }
        if identity.context == nil && identity.cluster == nil && identity.user == nil {
            row("Credentials", "in-cluster service account")
        } else {
            row("Context", identity.context)
            row("Cluster", identity.cluster)
            row("User", identity.user)
        }
        if let impersonating = identity.impersonating { row("Acting as", impersonating) }
        row("Server", identity.server)
        out += "</dl></header>\n<main>\n"
        for notice in index.notices {
            out += "<p class=\"notice\">\(htmlEscaped(notice))</p>\n"
        }
        var empty: [String] = []
        for namespace in index.namespaces {
            switch namespace.listing {
            case .services(let services) where services.isEmpty:
                empty.append(namespace.name)
            case .services(let services):
                out += "<section>\n<h2>\(htmlEscaped(namespace.name))</h2>\n<ul class=\"services\">\n"
                for service in services { out += serviceItem(service, namespace: namespace.name) }
                out += "</ul>\n</section>\n"
            case .unavailable(let reason):
                out += "<section>\n<h2>\(htmlEscaped(namespace.name))</h2>\n"
                out += "<p class=\"notice\">\(htmlEscaped(reason))</p>\n</section>\n"
            }
        }
        if index.namespaces.isEmpty && index.notices.isEmpty {
            out += "<p>No services found.</p>\n"
        }
        if !empty.isEmpty {
            out += "<p class=\"quiet\">No services in: \(empty.map(htmlEscaped).joined(separator: ", "))</p>\n"
        }
        out += """
            </main>
            <footer><p>Each port opens its service at its own origin
            (<code>http://&lt;port&gt;.&lt;service&gt;.&lt;namespace&gt;.svc.localhost</code>), where every path goes
            to that service and nothing else; the path form beside it is the one kubectl proxy uses.
            proxyd \(htmlEscaped(ProxyVersion.version)).</p></footer>
            </body>
            </html>

            """
        return out
    }

    private func serviceItem(_ service: ServiceIndex.Service, namespace: String) -> String {
        var out = "<li><span class=\"name\">\(htmlEscaped(service.name))</span>"
        if let type = service.type, type != "ClusterIP" { out += " <span class=\"quiet\">\(htmlEscaped(type))</span>" }
        if service.ports.isEmpty {
            return out + " <span class=\"quiet\">no ports</span></li>\n"
        }
        out += "\n<ul class=\"ports\">\n"
        for port in service.ports {
            let description = "\(port.port)/\(port.protocolName)"
            guard port.isProxied else {
                out += "<li>\(htmlEscaped(port.label)) <span class=\"quiet\">\(htmlEscaped(description)), not proxied</span></li>\n"
                continue
            }
            let target = ProxyTarget(
                kind: .service, namespace: namespace, name: service.name,
                port: Self.isDefaultPort(port, of: service) ? nil : port.label,
                scheme: port.isHTTPS ? "https" : nil)
            let hostAndPort = target.hostName + (proxyPort.map { ":" + $0 } ?? "")
            let pathURL = pathPrefix + target.proxyPath + "/"
            let portName = (port.name ?? "").isEmpty ? "" : htmlEscaped(port.label) + " · "
            out += "<li><a href=\"http://\(htmlEscaped(hostAndPort))/\">\(htmlEscaped(hostAndPort))</a> "
                + "<span class=\"quiet\">\(portName)\(htmlEscaped(description))</span> "
                + "<a class=\"path\" href=\"\(htmlEscaped(pathURL))\">path form</a></li>\n"
        }
        return out + "</ul></li>\n"
    }

    /// The apiserver picks a service's unnamed port when the proxy path names none; Kubernetes allows an unnamed
    /// port only on a single-port service. The `https--` form needs a port, so it keeps one.
    static func isDefaultPort(_ port: ServiceIndex.Port, of service: ServiceIndex.Service) -> Bool {
        service.ports.count == 1 && (port.name ?? "").isEmpty && !port.isHTTPS
    }

    static let style = """
        body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#1b1b1b;\
        overflow-wrap:anywhere}h1{margin:0 0 .5rem}h2{font-size:1.15rem;margin:1.5rem 0 .25rem;\
        border-bottom:1px solid #ccc}dl.who{display:grid;grid-template-columns:max-content 1fr;gap:0 1rem;\
        margin:0}dt{color:#555}dd{margin:0}ul{padding-left:1.25rem}ul.ports{list-style:none;padding:0;\
        margin:.1rem 0 .5rem}.name{font-weight:600}\
        .quiet{color:#666;font-size:.9em}a.path{font-size:.85em}.notice{background:#fff4e5;\
        border-left:4px solid #e69500;padding:.5rem .75rem}footer{margin-top:2rem;color:#666;font-size:.9em}\
        code{font-size:.9em}
        """
}

extension ServiceIndex {
    /// Services of a `ServiceList` body, grouped by namespace (sorted by name); `nil` when it is not one.
    static func servicesByNamespace(fromList body: [UInt8]) -> [String: [Service]]? {
        guard let items = JSONDocument.parse(body)?.object?["items"]?.array else { return nil }
        var out: [String: [Service]] = [:]
        for item in items {
            guard let object = item.object, let metadata = object["metadata"]?.object,
                let name = metadata["name"]?.string
            else { continue }
            let namespace = metadata["namespace"]?.string ?? ""
            let spec = object["spec"]?.object
            var ports: [Port] = []
            for entry in spec?["ports"]?.array ?? [] {
                guard let port = entry.object, let number = port["port"]?.number else { continue }
                ports.append(Port(
                    name: port["name"]?.string, port: Int(number), protocolName: port["protocol"]?.string ?? "TCP",
                    appProtocol: port["appProtocol"]?.string))
            }
            out[namespace, default: []].append(Service(name: name, type: spec?["type"]?.string, ports: ports))
        }
        for key in out.keys { out[key]?.sort { $0.name < $1.name } }
        return out
    }

    /// Names of a `NamespaceList` body, sorted; `nil` when it is not one.
    static func namespaceNames(fromList body: [UInt8]) -> [String]? {
        guard let items = JSONDocument.parse(body)?.object?["items"]?.array else { return nil }
        return items.compactMap { $0.object?["metadata"]?.object?["name"]?.string }.sorted()
    }

    /// The apiserver's reason for a failed request: a `Status` message, else the status code and body start.
    static func reason(status: Int, body: [UInt8]) -> String {
        if let message = JSONDocument.parse(body)?.object?["message"]?.string, !message.isEmpty {
            return "\(message) (HTTP \(status))"
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingWhitespace()
        return text.isEmpty ? "the apiserver answered HTTP \(status)" : "the apiserver answered HTTP \(status): \(text)"
    }
}

/// The index page's address, printed on stderr at start-up (stdout keeps kubectl's `Starting to serve on …`).
public enum ServiceIndexURL {
    /// `http://localhost:<port>/` for a listener on loopback or on every address, else the address itself;
    /// `nil` for a unix socket (a browser cannot open one).
    public static func announced(addresses: [SocketAddress]) -> String? {
        for address in addresses {
            switch address {
            case .v4(let host, let port):
                let name = host == "127.0.0.1" || host == "0.0.0.0" ? "localhost" : host
                return "http://\(name):\(port)/"
            case .v6(let host, let port):
                let name = host == "::1" || host == "::" ? "localhost" : "[\(host)]"
                return "http://\(name):\(port)/"
            case .unix:
                continue
            }
        }
        return nil
    }
}
