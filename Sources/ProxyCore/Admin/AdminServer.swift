import Dispatch
public import Logging
import Synchronization

/// What an admin listener serves.
public enum AdminRole: Sendable, Hashable {
    /// `/metrics` (`--metrics-bind-address`).
    case metrics
    /// `/livez`, `/healthz`, `/readyz` (`--healthz-bind-address`).
    case health
}

/// The admin listeners: metrics and health endpoints on addresses of their own, never the proxy's port (where
/// `/metrics` and `/readyz` are apiserver paths clients reach through the proxy). They run on their own event loop
/// with a small HTTP/1.1 responder, and share no code path with proxied requests beyond the request parser; what
/// they report they ask the proxy's loops for (`ProxyServer.scrapeMetrics`, `ProxyServer.checkHealth`).
public final class AdminServer: Sendable {
    /// At most this many admin connections at once; more are closed at once (probes and scrapes need a few).
    static let maxConnections = 64

    private let endpoints: [(address: AdminAddress, roles: Set<AdminRole>)]
    private let proxy: ProxyServer
    private let logger: Logger
    private let group = EventLoopGroup(count: 1, label: "proxyd.admin")
    private let listeners = Mutex<[Listener]>([])
    private let connectionCount = Mutex(0)

    /// - Parameter endpoints: the addresses and what each serves (one address may serve both).
    public init(endpoints: [(address: AdminAddress, roles: Set<AdminRole>)], proxy: ProxyServer, logger: Logger) {
        self.endpoints = endpoints
        self.proxy = proxy
        self.logger = logger
    }

    /// Binds every address and starts serving.
    /// - Returns: the bound addresses with their roles, in the order given.
    /// - Throws: `AdminListenError` naming the address that could not be bound.
    public func start() throws(AdminListenError) -> [(address: SocketAddress, roles: Set<AdminRole>)] {
        var bound: [(Listener, Set<AdminRole>)] = []
        for endpoint in endpoints {
            do {
                switch endpoint.address {
                case .tcp(let host, let port): bound.append((try Listener.bindTCP(host: host, port: port), endpoint.roles))
                case .unix(let path): bound.append((try Listener.bindUnix(path: path), endpoint.roles))
                }
            } catch {
                for (listener, _) in bound { listener.close() }
                throw AdminListenError(address: endpoint.address, error: error)
            }
        }
        for (listener, roles) in bound {
            listener.start(group: group) { [self] fd, _, loop in
                let admitted = connectionCount.withLock { count -> Bool in
                    guard count < Self.maxConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else {
                    try? Posix.close(fd: fd)
                    return
                }
                loop.execute {
                    let connection = AdminConnection(
                        socket: StreamConnection(fd: fd, loop: loop), roles: roles, server: self)
                    connection.start()
                }
            }
        }
        listeners.withLock { $0 = bound.map(\.0) }
        return bound.map { ($0.0.localAddress, $0.1) }
    }

    /// Closes the listeners (open admin connections end after their current answer).
    public func stop() {
        let bound = listeners.withLock { l in
            defer { l = [] }
            return l
        }
        for listener in bound { listener.close() }
    }

    func connectionClosed() {
        connectionCount.withLock { $0 -= 1 }
    }

    /// Answers one admin request; `completion` runs on a Dispatch queue.
    func answer(
        method: String, target: String, roles: Set<AdminRole>,
        completion: @escaping @Sendable (AdminAnswer) -> Void
    ) {
        guard let parsed = RequestTarget(target), let path = PercentEncoding.decode(parsed.rawPath) else {
            completion(AdminAnswer(status: 400, body: "400 Bad Request\n"))
            return
        }
        let query = AdminQuery(parsed.rawQuery ?? "")
        if path == "/metrics", roles.contains(.metrics) {
            guard method == "GET" || method == "HEAD" else {
                completion(.methodNotAllowed)
                return
            }
            proxy.scrapeMetrics { text, failure in
                if let text {
                    completion(AdminAnswer(status: 200, contentType: PrometheusText.contentType, body: text))
                } else {
                    completion(AdminAnswer(status: 503, body: "\(failure ?? "metrics unavailable")\n"))
                }
            }
            return
        }
        if roles.contains(.health), let (endpoint, only) = Self.healthEndpoint(path) {
            guard method == "GET" || method == "HEAD" else {
                completion(.methodNotAllowed)
                return
            }
            proxy.checkHealth(
                endpoint: endpoint, only: only, verbose: query.has("verbose"), excluded: Set(query.values("exclude"))
            ) { status, body in
                completion(AdminAnswer(status: status, body: body))
            }
            return
        }
        completion(AdminAnswer(status: 404, body: "404 page not found\n"))
    }

    /// `/readyz` → (`readyz`, nil), `/readyz/upstream` → (`readyz`, `upstream`).
    static func healthEndpoint(_ path: String) -> (String, String?)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].isEmpty, ["livez", "healthz", "readyz"].contains(String(parts[1])) else {
            return nil
        }
        if parts.count == 2 { return (String(parts[1]), nil) }
        if parts.count == 3, !parts[2].isEmpty { return (String(parts[1]), String(parts[2])) }
        return nil
    }
}

/// An admin listener could not be bound.
public struct AdminListenError: Error, CustomStringConvertible {
    public let address: AdminAddress
    public let error: IOError

    public var description: String {
        switch address {
        case .tcp: "listen tcp \(address): \(error)"
        case .unix(let path): "listen unix \(path): \(error)"
        }
    }
}

/// One admin response.
struct AdminAnswer: Sendable {
    var status: Int
    var contentType = "text/plain; charset=utf-8"
    var body: [UInt8]
    var extraHeaders: [(String, String)] = []

    init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    init(status: Int, body: String) {
        self.init(status: status, body: Array(body.utf8))
    }

    static var methodNotAllowed: AdminAnswer {
        var answer = AdminAnswer(status: 405, body: "405 method not allowed\n")
        answer.extraHeaders = [("Allow", "GET, HEAD")]
        return answer
    }
}

/// The query of an admin request: `verbose` (present or not) and repeated `exclude=` values.
struct AdminQuery {
    private let pairs: [(String, String)]

    init(_ raw: String) {
        pairs = raw.split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = PercentEncoding.decode(String(parts[0])) ?? String(parts[0])
            let value = parts.count > 1 ? PercentEncoding.decode(String(parts[1])) ?? String(parts[1]) : ""
            return (key, value)
        }
    }

    func has(_ key: String) -> Bool { pairs.contains { $0.0 == key } }
    func values(_ key: String) -> [String] { pairs.filter { $0.0 == key }.map(\.1) }
}
