import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// The demo's web dashboard backend: plain HTTP/1.1 on one loopback port and the same over TLS on another (the
/// stand-in's server certificate), with a WebSocket echo at `/ws`. The stand-in's service proxy forwards to it; it
/// is never reached directly by the tests' browser.
///
/// Routes: `/` (the dashboard, sets the cookie `dashboard-session`), `/static/app.js`, `/static/app.css`,
/// `/static/logo.svg`, `/about`, `/search?q=`, `/api/data` (any method; JSON: a message, and the method, Host,
/// cookies, `X-Forwarded-Uri`, `X-Forwarded-For`, `Authorization` and body length it received; with
/// `Access-Control-Allow-Origin: *`), `/ws` (WebSocket echo), `/login` (302 to the path `/home`, setting `dashboard-login` with a
/// `Domain` of the Host it was given, as apps that derive their cookie domain from the request do),
/// `/login-absolute` (the same with `Location: http://<Host it was given>/home`) and `/home` (shows whether the
/// login cookie came back). Anything else is a plain-text 404.
public final class DemoDashboard: Sendable {
    public let httpPort: Int
    public let httpsPort: Int
    private let channels: [any Channel]

    private init(httpPort: Int, httpsPort: Int, channels: [any Channel]) {
        self.httpPort = httpPort
        self.httpsPort = httpsPort
        self.channels = channels
    }

    static func start(group: any EventLoopGroup, tlsContext: NIOSSLContext, host: String = "127.0.0.1") async throws -> DemoDashboard {
        let sessions = Locked(0)
        func bootstrap(tls: NIOSSLContext?) -> ServerBootstrap {
            ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                        let webSocket = NIOWebSocketServerUpgrader(
                            maxFrameSize: 1 << 20,
                            shouldUpgrade: { channel, head in
                                channel.eventLoop.makeSucceededFuture(head.uri.hasPrefix("/ws") ? HTTPHeaders() : nil)
                            },
                            upgradePipelineHandler: { channel, _ in
                                channel.eventLoop.makeCompletedFuture {
                                    // The frame codec went in at the end of the pipeline: the HTTP handler must go.
                                    let sync = channel.pipeline.syncOperations
                                    sync.removeHandler(try sync.handler(type: DashboardHandler.self), promise: nil)
                                    try sync.addHandler(WebSocketConnection(application: WebSocketEchoApplication()))
                                }
                            })
                        try sync.configureHTTPServerPipeline(
                            withServerUpgrade: (upgraders: [webSocket], completionHandler: { _ in }), withErrorHandling: true)
                        try sync.addHandler(DashboardHandler(sessions: sessions))
                    }
                }
        }
        let http = try await bootstrap(tls: nil).bind(host: host, port: 0).get()
        do {
            let https = try await bootstrap(tls: tlsContext).bind(host: host, port: 0).get()
            return DemoDashboard(
                httpPort: http.localAddress?.port ?? 0, httpsPort: https.localAddress?.port ?? 0, channels: [http, https])
        } catch {
            try? await http.close()
            throw error
        }
    }

    func stop() async {
        for channel in channels {
            try? await channel.close()
        }
    }
}

/// Answers one request at a time on a dashboard connection (HTTP/1.1 keep-alive).
private final class DashboardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let sessions: Locked<Int>
    private var head: HTTPRequestHead?
    private var bodyLength = 0

    init(sessions: Locked<Int>) {
        self.sessions = sessions
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyLength = 0
        case .body(let buffer):
            bodyLength += buffer.readableBytes
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private struct Response {
        var status: HTTPResponseStatus = .ok
        var contentType = "text/html; charset=utf-8"
        var body = ""
        var headers: [(String, String)] = []
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.prefix { $0 != "?" })
        let query = head.uri.firstIndex(of: "?").map { String(head.uri[head.uri.index(after: $0)...]) } ?? ""
        let host = head.headers.first(name: "host") ?? ""
        let cookies = head.headers[canonicalForm: "cookie"].joined(separator: "; ")
        var response = Response()
        switch path {
        case "/":
            let session = sessions.withLock { count -> Int in
                count += 1
                return count
            }
            response.body = DemoDashboardPages.index(host: host)
            response.headers.append(("Set-Cookie", "dashboard-session=s\(session); Path=/; SameSite=Lax"))
        case "/static/app.js":
            response.contentType = "text/javascript; charset=utf-8"
            response.body = DemoDashboardPages.script
        case "/static/app.css":
            response.contentType = "text/css; charset=utf-8"
            response.body = DemoDashboardPages.css
        case "/static/logo.svg":
            response.contentType = "image/svg+xml"
            response.body = DemoDashboardPages.logo
        case "/about":
            response.body = DemoDashboardPages.about
        case "/search":
            let q = query.split(separator: "&").first { $0.hasPrefix("q=") }.map { String($0.dropFirst(2)) } ?? ""
            response.body = DemoDashboardPages.search(query: q.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? q)
        case "/api/data":
            response.contentType = "application/json"
            response.body = JSON.obj([
                "message": .string("hello from the demo dashboard"),
                "method": .string(head.method.rawValue),
                "host": .string(host),
                "cookies": .string(cookies),
                "forwardedUri": .string(head.headers.first(name: "x-forwarded-uri") ?? ""),
                "forwardedFor": .string(head.headers.first(name: "x-forwarded-for") ?? ""),
                "authorization": .string(head.headers.first(name: "authorization") ?? ""),
                "bodyLength": .int(bodyLength),
            ]).serialized + "\n"
            // As many dashboards do; the apiserver's proxy removes it.
            response.headers.append(("Access-Control-Allow-Origin", "*"))
        case "/login", "/login-absolute":
            let domain = host.split(separator: ":").first.map(String.init) ?? host
            response.status = .found
            response.contentType = "text/plain; charset=utf-8"
            response.body = "Found\n"
            response.headers.append(("Location", path == "/login" ? "/home" : "http://\(host)/home"))
            response.headers.append(("Set-Cookie", "dashboard-login=demo-user; Path=/; Domain=\(domain); SameSite=Lax"))
        case "/home":
            let user = cookies.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
                .first { $0.hasPrefix("dashboard-login=") }.map { String($0.dropFirst("dashboard-login=".count)) }
            response.body = DemoDashboardPages.home(user: user)
        case "/ws":
            response.status = .badRequest
            response.contentType = "text/plain; charset=utf-8"
            response.body = "/ws takes a WebSocket upgrade\n"
        default:
            response.status = .notFound
            response.contentType = "text/plain; charset=utf-8"
            response.body = "not found (demo dashboard): \(path)\n"
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.utf8.count))
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
