import Foundation
import NIOCore
import NIOPosix

/// Configuration of a stand-in apiserver.
public struct StandInConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 0
    /// Accepted bearer tokens (replaceable at runtime with `StandIn.setTokens(_:)`).
    public var tokens: [String] = ["standin-token"]
    /// Accepted `Authorization: Basic` user names and passwords (none by default).
    public var basicAuthUsers: [String: String] = [:]
    /// When true, a request needs `Authorization: Bearer <token>`, `Authorization: Basic` with a configured user, or a
    /// TLS client certificate signed by the stand-in CA; otherwise it gets 401. `/healthz`, `/livez` and `/readyz` are always anonymous.
    public var requireAuth = true
    /// Answer 401 as soon as a request's head arrives, before its body, as the real apiserver's authentication
    /// filter does (by default the stand-in answers every request after its body).
    public var unauthorizedBeforeBody = false
    /// ALPN offers `h2` and `http/1.1`; false offers `http/1.1` only.
    public var enableHTTP2 = true
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised on HTTP/2 connections.
    public var maxConcurrentStreams = 250
    /// Size of the large ConfigMapList served at `/api/v1/namespaces/big/configmaps` and, by default,
    /// `/standin/large`.
    public var largeListBytes = 8 << 20
    /// If set, `ca.crt`, `client.crt`, `client.key`, `kubeconfig` (token) and `kubeconfig-cert` (client certificate)
    /// are written there once the stand-in listens.
    public var stateDirectory: String?
    /// Subject alternative names of the server certificate: IP literals become IP SANs, the rest DNS SANs.
    public var serverNames = ["localhost", "127.0.0.1", "::1"]
    /// Requests answered 403 Forbidden with an apiserver-style Status, as RBAC would (changeable at runtime with
    /// `forbid(_:)` or `POST /standin/forbid?verb=list&resource=services&namespace=NS`).
    public var forbidden: [ForbiddenRule] = []
    /// Loads the demo's sample data (namespaces, pods and services in `demo`, `monitoring`, `restricted`) and starts
    /// the demo dashboard backend on loopback (see `DemoData`).
    public var demo = false
    /// If set, the CA is kept in (and, the first time, created in) this directory, so that several stand-ins share
    /// it: one kubeconfig then verifies all of them, as the apiservers of one cluster.
    public var caDirectory: String?

    public init() {}
}

/// Counters kept by a stand-in. `activeConnections` is a gauge; everything else counts since start or
/// `resetStats()`.
public struct StandInStats: Sendable, Equatable {
    public var tcpConnectionsAccepted = 0
    public var activeConnections = 0
    public var h2Connections = 0
    public var h1Connections = 0
    /// HTTP/2 streams plus HTTP/1.1 requests.
    public var streamsOpened = 0
    /// Watches currently streaming (a gauge: lets a test see that a client's disconnect reached the stand-in).
    public var activeWatches = 0
    /// GOAWAY frames sent by `sendGoAway()` (one per HTTP/2 connection open at the time).
    public var goAwaysSent = 0
    /// Requests per decoded path (query excluded), upgrade requests included.
    public var requestsByPath: [String: Int] = [:]
    /// Requests whose stream (HTTP/2) or connection (HTTP/1.1) closed before their body ended: a client's reset
    /// that reached the stand-in.
    public var requestsAbandoned = 0
    /// Upgraded connections by what they became: `"exec websocket v5.channel.k8s.io"`,
    /// `"portforward spdy portforward.k8s.io"`, `"echo SPDY/3.1"` (the raw echo tunnel), …
    public var upgrades: [String: Int] = [:]

    public init() {}

    var json: JSON {
        .obj([
            "tcpConnectionsAccepted": .int(tcpConnectionsAccepted),
            "activeConnections": .int(activeConnections),
            "activeWatches": .int(activeWatches),
            "h2Connections": .int(h2Connections),
            "h1Connections": .int(h1Connections),
            "streamsOpened": .int(streamsOpened),
            "goAwaysSent": .int(goAwaysSent),
            "requestsAbandoned": .int(requestsAbandoned),
            "requestsByPath": .object(requestsByPath.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: .int($0.value)) }),
            "upgrades": .object(upgrades.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: .int($0.value)) }),
        ])
    }
}

/// A permission the stand-in's user lacks. A rule for a namespace forbids the verb on the resource in that namespace
/// and, as RBAC does, across all namespaces (`/api/v1/services`); a rule without a namespace forbids only the
/// cluster-wide request.
public struct ForbiddenRule: Sendable, Hashable {
    /// `list`, `watch`, `get`, `create` or `delete`.
    public var verb: String
    /// The resource's plural name (`services`).
    public var resource: String
    public var namespace: String?

    public init(verb: String = "list", resource: String, namespace: String? = nil) {
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
    }

    /// Whether this rule forbids `verb` on `resource` in `namespace` (nil: across all namespaces).
    func forbids(verb: String, resource: String, namespace: String?) -> Bool {
        self.verb == verb && self.resource == resource && (namespace == nil || self.namespace == namespace)
    }

    var json: JSON {
        .obj(["verb": .string(verb), "resource": .string(resource), "namespace": namespace.map(JSON.string) ?? .null])
    }
}

public enum StandInError: Error, CustomStringConvertible {
    case invalidObject(String)
    case alreadyExists(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .invalidObject(let message): "invalid object: \(message)"
        case .alreadyExists(let name): "\(name) already exists"
        case .notFound(let name): "\(name) not found"
        }
    }
}

/// A Kubernetes apiserver stand-in: TLS (NIOSSL) with ALPN h2/http1.1 (NIOHTTP2/NIOHTTP1), a private CA, token and
/// client-certificate authentication, discovery documents, an in-memory store of pods, configmaps, namespaces and
/// deployments with watches, plus test endpoints under `/standin/`. Pods in the store answer exec, attach and
/// port-forward over WebSocket and SPDY/3.1 as kubelet does, with a fake command set and an echoing "pod" (see
/// `StreamingUpgrader`); any other upgraded path gets a raw echo tunnel.
public final class StandIn: Sendable {
    private let core: ServerCore
    /// The demo dashboard backend, when the configuration asked for the demo (`demo`).
    public let demoDashboard: DemoDashboard?

    private init(core: ServerCore, demoDashboard: DemoDashboard?) {
        self.core = core
        self.demoDashboard = demoDashboard
    }

    /// Generates the PKI, starts listening (and, for the demo, the dashboard, with the sample data) and, if
    /// configured, writes the state directory.
    public static func start(_ configuration: StandInConfiguration) async throws -> StandIn {
        let group = MultiThreadedEventLoopGroup.singleton
        let core = try ServerCore(configuration: configuration, group: group)
        var dashboard: DemoDashboard?
        if configuration.demo {
            let started = try await DemoDashboard.start(group: group, tlsContext: try core.backendServerTLSContext())
            dashboard = started
            do {
                try DemoData.load(into: core.store, dashboard: started)
            } catch {
                await started.stop()
                throw error
            }
            DemoData.forbidden.forEach(core.addForbiddenRule)
        }
        do {
            try await core.listen(port: configuration.port)
        } catch {
            await dashboard?.stop()
            throw error
        }
        let standIn = StandIn(core: core, demoDashboard: dashboard)
        if let directory = configuration.stateDirectory {
            try standIn.writeState(to: directory)
        }
        return standIn
    }

    public var configuration: StandInConfiguration { core.configuration }
    /// The port listened on (the real one when the configuration asked for 0).
    public var port: Int { core.port }
    /// `https://127.0.0.1:PORT` (or the configured host).
    public var url: String { core.baseURL }
    public var caPEM: String { core.pki.caPEM }
    public var clientCertificatePEM: String { core.pki.clientCertificatePEM }
    public var clientKeyPEM: String { core.pki.clientKeyPEM }
    /// The server certificate (signed by the CA, SANs from `serverNames`) and its key: test peers that should be
    /// trusted through the cluster CA (an https forward proxy) reuse them.
    public var serverCertificatePEM: String { core.pki.serverCertificatePEM }
    public var serverKeyPEM: String { core.pki.serverKeyPEM }

    /// A kubeconfig for this stand-in: the CA inline, and either a bearer token or the client certificate and key
    /// inline (or both, or neither).
    public func kubeconfigYAML(token: String?, clientCert: Bool) -> String {
        func base64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
        var user = ""
        if let token { user += "    token: \"\(token)\"\n" }
        if clientCert {
            user += "    client-certificate-data: \(base64(clientCertificatePEM))\n"
            user += "    client-key-data: \(base64(clientKeyPEM))\n"
        }
        if user.isEmpty { user = "    {}\n" }
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: standin
              cluster:
                server: \(url)
                certificate-authority-data: \(base64(caPEM))
            users:
            - name: standin
              user:
            \(user)contexts:
            - name: standin
              context:
                cluster: standin
                user: standin
                namespace: default
            current-context: standin

            """
    }

    /// Writes ca.crt, client.crt, client.key (0600), kubeconfig (token auth, first configured token) and
    /// kubeconfig-cert (client-certificate auth) into `directory`, creating it if needed.
    public func writeState(to directory: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func write(_ name: String, _ contents: String, private isPrivate: Bool = false) throws {
            let path = (directory as NSString).appendingPathComponent(name)
            try Data(contents.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            if isPrivate { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path) }
        }
        try write("ca.crt", caPEM)
        try write("client.crt", clientCertificatePEM)
        try write("client.key", clientKeyPEM, private: true)
        try write("kubeconfig", kubeconfigYAML(token: configuration.tokens.first ?? "", clientCert: false), private: true)
        try write("kubeconfig-cert", kubeconfigYAML(token: nil, clientCert: true), private: true)
    }

    public var stats: StandInStats { core.stats }

    public func resetStats() {
        core.resetStats()
    }

    public func setTokens(_ tokens: [String]) {
        core.setTokens(tokens)
    }

    /// Adds a permission the stand-in's user lacks (see `ForbiddenRule`).
    public func forbid(_ rule: ForbiddenRule) {
        core.addForbiddenRule(rule)
    }

    /// Removes every forbidden rule.
    public func allowAll() {
        core.setForbiddenRules([])
    }

    /// `/readyz` answers 200 when true, 500 when false (the rest of the API keeps answering).
    public func setReady(_ ready: Bool) {
        core.isReady = ready
    }

    /// A new client certificate and key (PEM) signed by the stand-in's CA, for a further identity; the echo
    /// endpoint reports the common name of the certificate a connection presented.
    public func issueClientCertificate(commonName: String, organization: String? = nil) throws -> (certificatePEM: String, keyPEM: String) {
        try core.pki.issueClientCertificate(commonName: commonName, organization: organization)
    }

    /// Sends GOAWAY(NO_ERROR, last stream ID = highest stream seen) on every HTTP/2 connection. Streams already
    /// open run to completion; each connection closes once it has none left. Returns when the frames are written.
    public func sendGoAway() async {
        _ = await core.sendGoAway()
    }

    /// Closes the listener and every connection, then listens again on the same port.
    public func restart() async throws {
        let port = core.port
        await core.closeAll()
        try await core.listen(port: port)
    }

    /// Closes the listener and every connection (and the demo dashboard). Watches end with their connections.
    public func stop() async throws {
        await core.closeAll()
        await demoDashboard?.stop()
    }

    // MARK: Store operations for tests

    @discardableResult
    public func createPod(namespace: String = "default", name: String, labels: [String: String] = [:]) throws -> String {
        try create(.pods, namespace: namespace, name: name, labels: labels, data: nil)
    }

    @discardableResult
    public func deletePod(namespace: String = "default", name: String) throws -> String {
        try delete(.pods, namespace: namespace, name: name)
    }

    @discardableResult
    public func createConfigMap(namespace: String = "default", name: String, data: [String: String] = [:]) throws -> String {
        try create(.configmaps, namespace: namespace, name: name, labels: [:], data: data)
    }

    @discardableResult
    public func deleteConfigMap(namespace: String = "default", name: String) throws -> String {
        try delete(.configmaps, namespace: namespace, name: name)
    }

    @discardableResult
    public func createNamespace(_ name: String) throws -> String {
        try create(.namespaces, namespace: nil, name: name, labels: [:], data: nil)
    }

    @discardableResult
    public func deleteNamespace(_ name: String) throws -> String {
        try delete(.namespaces, namespace: nil, name: name)
    }

    /// Creates or replaces the `discovery.k8s.io/v1` EndpointSlice `name` in `default`, labelled for the
    /// `kubernetes` service as the apiservers label theirs: one endpoint per address, all at `port` ("https").
    /// Watchers see ADDED or MODIFIED.
    @discardableResult
    public func setAPIServerEndpointSlice(name: String, addresses: [String], port: Int, ready: Bool = true) throws -> String {
        let body: JSON = .obj([
            "metadata": .obj([
                "name": .string(name),
                "labels": .obj(["kubernetes.io/service-name": .string("kubernetes")]),
            ]),
            "addressType": .string(addresses.first?.contains(":") == true ? "IPv6" : "IPv4"),
            "endpoints": .array(addresses.map { address in
                .obj(["addresses": .array([.string(address)]), "conditions": .obj(["ready": .bool(ready)])])
            }),
            "ports": .array([.obj(["name": .string("https"), "port": .int(port), "protocol": .string("TCP")])]),
        ])
        let object = try core.store.createOrReplace(.endpointslices, namespace: "default", body: body)
        return object["metadata"]?["resourceVersion"]?.stringValue ?? ""
    }

    @discardableResult
    public func deleteEndpointSlice(name: String) throws -> String {
        try delete(.endpointslices, namespace: "default", name: name)
    }

    /// Names of the pods in a namespace (all namespaces when nil), sorted by namespace and name.
    public func podNames(namespace: String? = nil) -> [String] {
        core.store.list(.pods, namespace: namespace).items.compactMap { $0["metadata"]?["name"]?.stringValue }
    }

    /// The current resourceVersion of the store.
    public var resourceVersion: String { String(core.store.currentResourceVersion) }

    /// Creates an object; returns its resourceVersion.
    private func create(_ resource: Resource, namespace: String?, name: String, labels: [String: String], data: [String: String]?) throws -> String {
        var metadata: JSON = .obj(["name": .string(name)])
        if !labels.isEmpty {
            metadata["labels"] = .object(labels.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: .string($0.value)) })
        }
        var body: JSON = .obj(["metadata": metadata])
        if let data {
            body["data"] = .object(data.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: .string($0.value)) })
        }
        do {
            let object = try core.store.create(resource, namespace: namespace, body: body)
            return object["metadata"]?["resourceVersion"]?.stringValue ?? ""
        } catch StoreError.alreadyExists(_, let name) {
            throw StandInError.alreadyExists("\(resource.singular) \(name)")
        } catch StoreError.invalid(let message) {
            throw StandInError.invalidObject(message)
        }
    }

    private func delete(_ resource: Resource, namespace: String?, name: String) throws -> String {
        do {
            let object = try core.store.delete(resource, namespace: namespace, name: name)
            return object["metadata"]?["resourceVersion"]?.stringValue ?? ""
        } catch {
            throw StandInError.notFound("\(resource.singular) \(name)")
        }
    }
}
