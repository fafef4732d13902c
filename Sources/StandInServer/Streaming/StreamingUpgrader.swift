import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// What an exec or attach request asks for (from its query).
struct ExecRequest {
    var namespace: String
    var pod: String
    var command: [String]
    var stdin: Bool
    var stdout: Bool
    var stderr: Bool
    var tty: Bool
}

/// A pod's streaming subresource: `/api/v1/namespaces/{ns}/pods/{name}/{exec|attach|portforward}`.
struct StreamingTarget {
    enum Kind: String { case exec, attach, portforward }
    var kind: Kind
    var namespace: String
    var pod: String
    var query: [(String, String)]

    static func parse(_ uri: String) -> StreamingTarget? {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts[0])
        let segments = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard segments.count == 7, segments[0] == "api", segments[1] == "v1", segments[2] == "namespaces",
            segments[4] == "pods", let kind = Kind(rawValue: segments[6])
        else { return nil }
        var query: [(String, String)] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                func decode(_ s: Substring) -> String {
                    let plus = s.replacingOccurrences(of: "+", with: " ")
                    return plus.removingPercentEncoding ?? plus
                }
                query.append((decode(kv[0]), kv.count > 1 ? decode(kv[1]) : ""))
            }
        }
        return StreamingTarget(kind: kind, namespace: segments[3], pod: segments[5], query: query)
    }

    func flag(_ name: String) -> Bool {
        query.contains { $0.0 == name && ($0.1 == "true" || $0.1 == "1") }
    }

    var execRequest: ExecRequest {
        let command = kind == .attach ? ["cat"] : query.filter { $0.0 == "command" }.map(\.1)
        return ExecRequest(
            namespace: namespace, pod: pod, command: command,
            stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr"), tty: flag("tty"))
    }
}

/// The stand-in refused to upgrade this request; it is answered as a plain request instead (404 for a pod that
/// does not exist, 400 otherwise, 401 without credentials). Not an error of the connection.
struct StreamingUpgradeDeclined: Error {}

/// Answers `Upgrade: websocket` and `Upgrade: SPDY/3.1`.
///
/// For the streaming subresources of a pod in the store, it speaks what kubelet speaks: exec and attach over
/// WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) or SPDY (`X-Stream-Protocol-Version: v4.channel.k8s.io`),
/// port-forward over SPDY (`portforward.k8s.io`), tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`)
/// or not. A service or pod proxy path with a loopback backend is tunnelled to that backend (`BackendTunnel`) when
/// the backend itself answers 101; if it does not, the request is answered as a plain proxied request. Any other
/// path gets the raw echo tunnel (`TunnelEchoHandler`), which tests use to see that a proxy is a transparent byte
/// pipe.
struct StreamingUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol: String
    let requiredUpgradeHeaders: [String] = []
    let core: ServerCore
    let connection: ConnectionInfo
    /// The backend connection between `buildUpgradeResponse` and `upgrade` (one upgrade per connection).
    let pendingTunnel: NIOLoopBoundBox<BackendTunnel.Response?>

    init(supportedProtocol: String, core: ServerCore, connection: ConnectionInfo, eventLoop: any EventLoop) {
        self.supportedProtocol = supportedProtocol
        self.core = core
        self.connection = connection
        self.pendingTunnel = NIOLoopBoundBox(nil, eventLoop: eventLoop)
    }

    static let execWebSocketProtocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    static let portForwardWebSocketProtocols = ["SPDY/3.1+portforward.k8s.io"]
    /// Only v4: older versions report the exit status differently (plain text on the error stream).
    static let execSPDYProtocols = ["v4.channel.k8s.io"]
    static let portForwardSPDYProtocols = ["portforward.k8s.io"]
    static let webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    private enum Plan {
        case backend(ServiceProxyTarget, ProxyBackend)
        case echo
        case webSocket(StreamingTarget, subprotocol: String, accept: String)
        case spdy(StreamingTarget, streamProtocol: String)
    }

    private var isWebSocket: Bool { supportedProtocol.lowercased() == "websocket" }

    /// Decides from the request alone, so `buildUpgradeResponse` and `upgrade` agree.
    private func plan(_ request: HTTPRequestHead) -> Plan? {
        let rawPath = String(request.uri.prefix { $0 != "?" })
        if let proxied = ServiceProxyTarget.parse(rawPath: rawPath), !proxied.path.isEmpty,
            case .backend(let backend) = core.store.resolve(proxied)
        {
            return authenticated(request) ? .backend(proxied, backend) : nil
        }
        guard let target = StreamingTarget.parse(request.uri) else { return .echo }
        guard authenticated(request), core.store.get(.pods, namespace: target.namespace, name: target.pod) != nil else {
            return nil
        }
        let offered = { (name: String) -> [String] in
            request.headers[name].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        if isWebSocket {
            let supported = target.kind == .portforward ? Self.portForwardWebSocketProtocols : Self.execWebSocketProtocols
            guard let key = request.headers.first(name: "sec-websocket-key"),
                let chosen = offered("sec-websocket-protocol").first(where: { supported.contains($0) })
            else { return nil }
            let digest = Insecure.SHA1.hash(data: Data((key + Self.webSocketGUID).utf8))
            return .webSocket(target, subprotocol: chosen, accept: Data(digest).base64EncodedString())
        }
        let supported = target.kind == .portforward ? Self.portForwardSPDYProtocols : Self.execSPDYProtocols
        let versions = offered("x-stream-protocol-version")
        guard let chosen = supported.first(where: { versions.contains($0) }) else { return nil }
        return .spdy(target, streamProtocol: chosen)
    }

    private func authenticated(_ request: HTTPRequestHead) -> Bool {
        if !core.configuration.requireAuth || connection.hasClientCertificate { return true }
        guard let header = request.headers.first(name: "authorization") else { return false }
        return core.authenticate(authorization: header) != nil
    }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        var headers = initialResponseHeaders
        // An accepted upgrade never reaches RequestHandler: count its path here (a declined one is counted there).
        let rawPath = String(upgradeRequest.uri.prefix { $0 != "?" })
        let path = rawPath.removingPercentEncoding ?? rawPath
        switch plan(upgradeRequest) {
        case nil:
            return channel.eventLoop.makeFailedFuture(StreamingUpgradeDeclined())
        case .backend(let target, let backend):
            let initial = headers
            let core = self.core
            return openTunnel(channel: channel, request: upgradeRequest, target: target, backend: backend).map { extra in
                core.recordRequest(path: path)
                var headers = initial
                headers.add(contentsOf: extra)
                return headers
            }
        case .echo:
            if let offered = upgradeRequest.headers.first(name: "sec-websocket-protocol") {
                headers.add(name: "Sec-WebSocket-Protocol", value: offered)
            }
        case .webSocket(_, let subprotocol, let accept):
            headers.add(name: "Sec-WebSocket-Accept", value: accept)
            headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
        case .spdy(_, let streamProtocol):
            headers.add(name: "X-Stream-Protocol-Version", value: streamProtocol)
        }
        core.recordRequest(path: path)
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        guard let plan = plan(upgradeRequest) else {
            return context.eventLoop.makeFailedFuture(StreamingUpgradeDeclined())
        }
        // Right behind the upgrade handler, so the HTTP request handler further down never sees raw bytes.
        var handlers: [any ChannelHandler] = []
        let kind: String
        switch plan {
        case .backend:
            guard let response = pendingTunnel.value else {
                return context.eventLoop.makeFailedFuture(StreamingUpgradeDeclined())
            }
            pendingTunnel.value = nil
            core.recordUpgrade("proxy \(supportedProtocol)")
            return context.eventLoop.makeCompletedFuture { try BackendTunnel.join(clientContext: context, backend: response) }
        case .echo:
            return upgradeToEcho(context: context, upgradeRequest: upgradeRequest)
        case .webSocket(let target, let subprotocol, _):
            let application: any WebSocketApplication
            if target.kind == .portforward {
                application = WebSocketSPDYTunnel { PortForwardApplication(namespace: target.namespace, pod: target.pod) }
            } else {
                application = WebSocketExecApplication(
                    request: target.execRequest, version: subprotocol.hasPrefix("v5.") ? 5 : 4)
            }
            handlers = [
                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)),
                WebSocketFrameEncoder(),
                WebSocketConnection(application: application),
            ]
            kind = "\(target.kind.rawValue) websocket \(subprotocol)"
        case .spdy(let target, let streamProtocol):
            handlers = [
                SPDYConnectionHandler { () -> any SPDYStreamApplication in
                    if target.kind == .portforward {
                        return PortForwardApplication(namespace: target.namespace, pod: target.pod)
                    }
                    return SPDYExecApplication(request: target.execRequest)
                }
            ]
            kind = "\(target.kind.rawValue) spdy \(streamProtocol)"
        }
        core.recordUpgrade(kind)
        do {
            var position = context.handler
            for handler in handlers {
                try context.pipeline.syncOperations.addHandler(handler, position: .after(position))
                position = handler
            }
            return context.eventLoop.makeSucceededFuture(())
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }

    /// Sends the upgrade request to the backend and waits for its head; on 101 keeps the connection for `upgrade` and
    /// returns the backend's fields for the stand-in's own 101 (NIO adds `Connection` and `Upgrade`).
    private func openTunnel(
        channel: any Channel, request: HTTPRequestHead, target: ServiceProxyTarget, backend: ProxyBackend
    ) -> EventLoopFuture<[(String, String)]> {
        let query = request.uri.firstIndex(of: "?").map { String(request.uri[$0...]) } ?? ""
        let head = ProxyHeaders.backendRequest(
            request, uri: target.path + query, clientAddress: channel.remoteAddress?.ipAddress, forwardedURI: nil,
            backendHostPort: backend.hostPort, bodyLength: nil)
        let pending = pendingTunnel
        return BackendTunnel.open(
            backend: backend, head: head, eventLoop: channel.eventLoop,
            tlsContext: backend.scheme == "https" ? core.backendTLSContext : nil
        ).flatMapThrowing { response in
            guard response.status == 101 else {
                response.channel.close(promise: nil)
                throw StreamingUpgradeDeclined()  // asked again as a plain request by RequestHandler
            }
            pending.value = response
            return response.headers.filter { !["connection", "upgrade"].contains($0.0.lowercased()) }
        }.flatMapErrorThrowing { error in
            if error is StreamingUpgradeDeclined { throw error }
            throw StreamingUpgradeDeclined()
        }
    }

    /// The test protocol: one greeting line naming the protocol, the path and how the caller authenticated, then an
    /// echo of every byte received.
    private func upgradeToEcho(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        var auth = "none"
        if let header = upgradeRequest.headers["authorization"].first,
            let method = core.authenticate(authorization: header)
        {
            auth = method
        } else if connection.hasClientCertificate {
            auth = "certificate"
        }
        core.recordUpgrade("echo \(supportedProtocol)")
        let greeting = "standin tunnel: protocol=\(supportedProtocol) path=\(upgradeRequest.uri) auth=\(auth)\n"
        do {
            // A tunnel passes half-closes on: after the client's close_notify, keep writing the echo.
            try context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
            try context.pipeline.syncOperations.addHandler(
                TunnelEchoHandler(greeting: greeting), position: .after(context.handler))
            return context.eventLoop.makeSucceededFuture(())
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }
}
