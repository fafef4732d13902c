import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL

/// What a request handler knows about the connection it arrived on.
struct ConnectionInfo: Sendable {
    var protocolName: String
    var clientCertificateCN: String?
    var hasClientCertificate: Bool
}

/// Shared state of one stand-in: configuration, PKI, store, stats and the live connections.
final class ServerCore: Sendable {
    let configuration: StandInConfiguration
    let pki: StandInPKI
    let store = ObjectStore()
    let sslContext: NIOSSLContext
    let group: any EventLoopGroup

    struct ConnectionEntry: Sendable {
        var channel: any Channel
        var h2: NIOLoopBound<H2ConnectionController>?
    }

    /// For `https:` service and pod proxy backends: like the apiserver's proxy transport, it does not verify them.
    let backendTLSContext: NIOSSLContext

    private struct Mutable {
        var tokens: Set<String>
        var forbidden: [ForbiddenRule] = []
        var stats = StandInStats()
        var connections: [ObjectIdentifier: ConnectionEntry] = [:]
        var port = 0
        var serverChannel: (any Channel)?
        var stopped = false
        var ready = true
    }

    private let mutable: Locked<Mutable>

    init(configuration: StandInConfiguration, group: any EventLoopGroup) throws {
        self.configuration = configuration
        self.group = group
        self.pki = try StandInPKI.generate(serverNames: configuration.serverNames, caDirectory: configuration.caDirectory)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pki.serverCertificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem))
        )
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = configuration.enableHTTP2 ? ["h2", "http/1.1"] : ["http/1.1"]
        // A client certificate is optional, but one that is presented must chain to the stand-in CA.
        tls.certificateVerification = .optionalVerification
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(pki.caPEM.utf8), format: .pem)])
        tls.sendCANameList = true
        // How long a closing connection waits for the peer's close_notify (bounds stop() and restart()).
        tls.shutdownTimeout = .seconds(1)
        self.sslContext = try NIOSSLContext(configuration: tls)
        var backendTLS = TLSConfiguration.makeClientConfiguration()
        backendTLS.certificateVerification = .none
        self.backendTLSContext = try NIOSSLContext(configuration: backendTLS)
        self.mutable = Locked(Mutable(tokens: Set(configuration.tokens), forbidden: configuration.forbidden))
    }

    /// A TLS server context for loopback backends (the demo dashboard's https port): the stand-in's server
    /// certificate, HTTP/1.1 only.
    func backendServerTLSContext() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pki.serverCertificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem))
        )
        tls.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: tls)
    }

    // MARK: Tokens, readiness and stats

    /// Whether `/readyz` answers 200 (else 500, as an apiserver that lost etcd).
    var isReady: Bool {
        get { mutable.withLock { $0.ready } }
        set { mutable.withLock { $0.ready = newValue } }
    }

    func setTokens(_ tokens: [String]) {
        mutable.withLock { $0.tokens = Set(tokens) }
    }

    var forbiddenRules: [ForbiddenRule] {
        mutable.withLock { $0.forbidden }
    }

    func setForbiddenRules(_ rules: [ForbiddenRule]) {
        mutable.withLock { $0.forbidden = rules }
    }

    func addForbiddenRule(_ rule: ForbiddenRule) {
        mutable.withLock { state in
            if !state.forbidden.contains(rule) { state.forbidden.append(rule) }
        }
    }

    func isForbidden(verb: String, resource: String, namespace: String?) -> Bool {
        mutable.withLock { $0.forbidden.contains { $0.forbids(verb: verb, resource: resource, namespace: namespace) } }
    }

    func isValidToken(_ token: String) -> Bool {
        mutable.withLock { $0.tokens.contains(token) }
    }

    /// Checks the credentials of an `Authorization` header value; returns how they authenticate ("token" or
    /// "basic:USER"), or nil.
    func authenticate(authorization: String) -> String? {
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let scheme = parts[0].lowercased()
        let value = parts[1].trimmingCharacters(in: .whitespaces)
        if scheme == "bearer" {
            return isValidToken(value) ? "token" : nil
        }
        if scheme == "basic", let data = Data(base64Encoded: value) {
            let pair = String(decoding: data, as: UTF8.self)
            guard let colon = pair.firstIndex(of: ":") else { return nil }
            let user = String(pair[..<colon])
            let password = String(pair[pair.index(after: colon)...])
            if let expected = configuration.basicAuthUsers[user], expected == password {
                return "basic:" + user
            }
        }
        return nil
    }

    var stats: StandInStats {
        var stats = mutable.withLock { state in
            var stats = state.stats
            stats.activeConnections = state.connections.count
            return stats
        }
        stats.activeWatches = store.watcherCount
        return stats
    }

    func resetStats() {
        mutable.withLock { $0.stats = StandInStats() }
    }

    func recordRequest(path: String) {
        mutable.withLock { state in
            state.stats.streamsOpened += 1
            state.stats.requestsByPath[path, default: 0] += 1
        }
    }

    func recordAbandonedRequest() {
        mutable.withLock { $0.stats.requestsAbandoned += 1 }
    }

    func recordUpgrade(_ kind: String) {
        mutable.withLock { $0.stats.upgrades[kind, default: 0] += 1 }
    }

    var port: Int {
        mutable.withLock { $0.port }
    }

    var baseURL: String {
        "https://\(Self.urlHost(configuration.host)):\(port)"
    }

    static func urlHost(_ host: String) -> String {
        switch host {
        case "0.0.0.0", "": return "127.0.0.1"
        case "::": return "[::1]"
        default: return host.contains(":") ? "[\(host)]" : host
        }
    }

    // MARK: Listening

    func listen(port: Int) async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                self.initializeConnection(channel)
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: port).get()
        let boundPort = channel.localAddress?.port ?? port
        mutable.withLock { state in
            state.serverChannel = channel
            state.port = boundPort
            state.stopped = false
        }
    }

    /// Stops listening and closes every connection (abruptly for TLS: no graceful close_notify wait).
    func closeAll() async {
        let server = mutable.withLock { state -> (any Channel)? in
            defer { state.serverChannel = nil }
            return state.serverChannel
        }
        if let server {
            try? await server.close()
        }
        // Snapshot after the listener is gone, so no connection accepted meanwhile is missed.
        let connections = mutable.withLock { $0.connections.values.map(\.channel) }
        for connection in connections {
            connection.close(promise: nil)
        }
        for connection in connections {
            try? await connection.closeFuture.get()
        }
    }

    // MARK: Connections

    private func initializeConnection(_ channel: any Channel) -> EventLoopFuture<Void> {
        let id = ObjectIdentifier(channel)
        mutable.withLock { state in
            state.stats.tcpConnectionsAccepted += 1
            state.connections[id] = ConnectionEntry(channel: channel, h2: nil)
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = self.mutable.withLock { $0.connections.removeValue(forKey: id) }
        }
        let sslContext = self.sslContext
        do {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return channel.configureHTTP2SecureUpgrade(
            h2ChannelConfigurator: { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.configureHTTP2(channel)
                }
            },
            http1ChannelConfigurator: { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.configureHTTP1(channel)
                }
            }
        )
    }

    private func connectionInfo(_ channel: any Channel, protocolName: String) throws -> ConnectionInfo {
        let ssl = try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        let certificate = ssl.peerCertificate
        let cn = certificate.flatMap { try? $0.toDERBytes() }.flatMap(StandInPKI.commonName(ofDER:))
        return ConnectionInfo(protocolName: protocolName, clientCertificateCN: cn, hasClientCertificate: certificate != nil)
    }

    private func configureHTTP1(_ channel: any Channel) throws {
        let info = try connectionInfo(channel, protocolName: "http/1.1")
        mutable.withLock { $0.stats.h1Connections += 1 }
        let sync = channel.pipeline.syncOperations
        let upgraders: [any HTTPServerProtocolUpgrader] = ["websocket", "SPDY/3.1"].map {
            StreamingUpgrader(supportedProtocol: $0, core: self, connection: info, eventLoop: channel.eventLoop)
        }
        try sync.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: upgraders, completionHandler: { _ in }), withErrorHandling: true)
        try sync.addHandler(RequestHandler(core: self, connection: info))
    }

    private func configureHTTP2(_ channel: any Channel) throws {
        let info = try connectionInfo(channel, protocolName: "h2")
        let controller = H2ConnectionController()
        let bound = NIOLoopBound(controller, eventLoop: channel.eventLoop)
        let id = ObjectIdentifier(channel)
        mutable.withLock { state in
            state.stats.h2Connections += 1
            state.connections[id]?.h2 = bound
        }

        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfiguration.initialSettings =
            nioDefaultSettings.filter { $0.parameter != .maxConcurrentStreams && $0.parameter != .initialWindowSize } + [
                HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maxConcurrentStreams),
                HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            ]
        connectionConfiguration.targetWindowSize = 4 << 20
        var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
        streamConfiguration.targetWindowSize = 1 << 20
        streamConfiguration.outboundBufferSizeHighWatermark = 64 << 10
        streamConfiguration.outboundBufferSizeLowWatermark = 16 << 10

        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server,
            connectionConfiguration: connectionConfiguration,
            streamConfiguration: streamConfiguration,
            streamDelegate: H2StreamDelegate(controller: bound)
        ) { [self] stream in
            stream.eventLoop.makeCompletedFuture {
                let sync = stream.pipeline.syncOperations
                try sync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                try sync.addHandler(RequestHandler(core: self, connection: info))
            }
        }
        try channel.pipeline.syncOperations.addHandler(controller)
    }

    /// Sends GOAWAY(NO_ERROR, highest stream seen) on every HTTP/2 connection; each closes once its streams finish.
    @discardableResult
    func sendGoAway() async -> Int {
        let controllers = mutable.withLock { state in
            state.connections.values.compactMap { entry in entry.h2.map { (entry.channel.eventLoop, $0) } }
        }
        for (eventLoop, controller) in controllers {
            try? await eventLoop.submit {
                controller.value.sendGoAway()
            }.get()
        }
        mutable.withLock { $0.stats.goAwaysSent += controllers.count }
        return controllers.count
    }
}

/// Forwards stream lifecycle to the per-connection controller (called on the connection's event loop).
struct H2StreamDelegate: NIOHTTP2StreamDelegate {
    let controller: NIOLoopBound<H2ConnectionController>

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        controller.value.streamCreated(id)
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        controller.value.streamClosed(id)
    }
}

/// Sits behind `NIOHTTP2Handler` on an HTTP/2 connection: tracks open streams and the highest stream ID, and
/// implements graceful GOAWAY (in-flight streams complete, then the connection closes).
final class H2ConnectionController: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private var context: ChannelHandlerContext?
    private var openStreams: Set<HTTP2StreamID> = []
    private var highestStreamID: HTTP2StreamID = .rootStream
    private var goAwaySent = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func streamCreated(_ id: HTTP2StreamID) {
        openStreams.insert(id)
        if id > highestStreamID { highestStreamID = id }
    }

    func streamClosed(_ id: HTTP2StreamID) {
        openStreams.remove(id)
        closeIfDrained()
    }

    func sendGoAway() {
        guard let context, !goAwaySent else { return }
        goAwaySent = true
        let frame = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: highestStreamID, errorCode: .noError, opaqueData: nil)
        )
        context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard goAwaySent, openStreams.isEmpty, let context else { return }
        // Let the GOAWAY and the last response frames leave before closing.
        context.eventLoop.assumeIsolated().execute {
            context.close(promise: nil)
        }
    }
}
