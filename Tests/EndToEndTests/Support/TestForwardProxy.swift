import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// A forward proxy for the tests, on loopback only: HTTP `CONNECT` (optionally over TLS) or SOCKS5 (RFC 1928, with
/// RFC 1929 username/password when `credentials` is set). It only tunnels to loopback targets, counts the tunnels it
/// made (names under `.test` are dialled as 127.0.0.1) and records what each client asked for. `behaviour` can be switched while it runs.
final class TestForwardProxy: @unchecked Sendable {
    enum Kind: Sendable { case connect, socks5 }

    enum Behaviour: Sendable, Equatable {
        case tunnel
        /// CONNECT: answer with this status (and close). SOCKS5: send this reply code.
        case refuse(Int)
        /// CONNECT only: read the request and never answer.
        case silent
    }

    struct Stats: Sendable {
        var tunnels = 0
        /// `host:port` of every request, in order (CONNECT target, or the SOCKS5 address rendered the same way).
        var targets: [String] = []
        /// SOCKS5 address types seen (1 IPv4, 3 domain, 4 IPv6).
        var socksAddressTypes: [UInt8] = []
        /// `Proxy-Authorization` values / `user:password` pairs received.
        var credentialsSeen: [String] = []
        var authFailures = 0
    }

    let kind: Kind
    let credentials: (user: String, password: String)?
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let lock = NSLock()
    private var _stats = Stats()
    private var _behaviour = Behaviour.tunnel

    var port: Int { channel.localAddress?.port ?? 0 }
    var stats: Stats { lock.withLock { _stats } }
    var behaviour: Behaviour {
        get { lock.withLock { _behaviour } }
        set { lock.withLock { _behaviour = newValue } }
    }

    /// Synchronous (it waits for the bind on the proxy's own thread), so that a kubeconfig callback can call it.
    /// - Parameters:
    ///   - tls: certificate and key (PEM) to serve TLS with (an `https://` proxy).
    ///   - port: 0 for any; a fixed port brings a stopped proxy back where proxyd expects it.
    static func start(kind: Kind, tls: (certificatePEM: String, keyPEM: String)? = nil,
                      credentials: (user: String, password: String)? = nil, port: Int = 0) throws -> TestForwardProxy {
        let sslContext: NIOSSLContext?
        if let tls {
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(tls.certificatePEM.utf8), format: .pem))],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.keyPEM.utf8), format: .pem)))
            sslContext = try NIOSSLContext(configuration: configuration)
        } else {
            sslContext = nil
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = ProxyBox()
        let channel: any Channel
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        guard let proxy = box.proxy else { throw ChildError("proxy not ready") }
                        if let sslContext {
                            try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        }
                        try child.pipeline.syncOperations.addHandler(FrontHandler(proxy: proxy))
                    }
                }
                .bind(host: "127.0.0.1", port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        let proxy = TestForwardProxy(kind: kind, credentials: credentials, group: group, channel: channel)
        box.proxy = proxy
        return proxy
    }

    private init(kind: Kind, credentials: (user: String, password: String)?, group: MultiThreadedEventLoopGroup,
                 channel: any Channel) {
        self.kind = kind
        self.credentials = credentials
        self.group = group
        self.channel = channel
    }

    func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }

    fileprivate func record(_ update: (inout Stats) -> Void) { lock.withLock { update(&_stats) } }
}

private final class ProxyBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _proxy: TestForwardProxy?
    var proxy: TestForwardProxy? {
        get { lock.withLock { _proxy } }
        set { lock.withLock { _proxy = newValue } }
    }
}

/// The client side: parses CONNECT or the SOCKS5 exchange, dials the (loopback) target, then relays.
private final class FrontHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case greeting, socksAuth, request, connecting, relaying(any Channel), closed }

    private let proxy: TestForwardProxy
    private var state = State.greeting
    private var buffer: [UInt8] = []

    init(proxy: TestForwardProxy) { self.proxy = proxy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        let received = bytes.readBytes(length: bytes.readableBytes) ?? []
        if case .relaying(let peer) = state {
            peer.writeAndFlush(ByteBuffer(bytes: received), promise: nil)
            return
        }
        buffer += received
        process(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .relaying(let peer) = state { peer.close(promise: nil) }
        state = .closed
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func send(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
    }

    private func process(context: ChannelHandlerContext) {
        switch proxy.kind {
        case .connect: processConnect(context: context)
        case .socks5: processSOCKS(context: context)
        }
    }

    // MARK: HTTP CONNECT

    private func processConnect(context: ChannelHandlerContext) {
        guard case .greeting = state else { return }
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = buffer.firstRange(of: terminator) else {
            if buffer.count > 16384 { context.close(promise: nil) }
            return
        }
        let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
        buffer.removeSubrange(..<end.upperBound)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count == 3, parts[0] == "CONNECT" else {
            reply(context, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        }
        let target = String(parts[1])
        proxy.record { $0.targets.append(target) }
        if let credentials = proxy.credentials {
            let expected = "Basic " + Data("\(credentials.user):\(credentials.password)".utf8).base64EncodedString()
            let given = lines.dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
                .map { String($0.dropFirst("proxy-authorization:".count)).trimmingCharacters(in: .whitespaces) }
            if let given { proxy.record { $0.credentialsSeen.append(given) } }
            guard given == expected else {
                proxy.record { $0.authFailures += 1 }
                reply(context, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            }
        }
        switch proxy.behaviour {
        case .tunnel: break
        case .silent:
            state = .connecting
            return
        case .refuse(let status):
            reply(context, "HTTP/1.1 \(status) Refused By Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        }
        guard let destination = Self.loopbackHostPort(target) else {
            reply(context, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        }
        dial(context: context, host: destination.host, port: destination.port,
             success: Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8),
             failure: Array("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
    }

    private func reply(_ context: ChannelHandlerContext, _ text: String) {
        state = .closed
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    static func loopbackHostPort(_ target: String) -> (host: String, port: Int)? {
        guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]) else {
            return nil
        }
        var host = String(target[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // Names under the reserved `.test` domain stand for the loopback stand-in: the proxy plays DNS for them.
        if host.hasSuffix(".test") { return ("127.0.0.1", port) }
        guard ["127.0.0.1", "::1", "localhost"].contains(host) else { return nil }
        return (host, port)
    }

    // MARK: SOCKS5

    private func processSOCKS(context: ChannelHandlerContext) {
        while true {
            switch state {
            case .greeting:
                guard buffer.count >= 2, buffer.count >= 2 + Int(buffer[1]) else { return }
                let methods = Array(buffer[2..<(2 + Int(buffer[1]))])
                buffer.removeFirst(2 + Int(buffer[1]))
                if proxy.credentials != nil {
                    guard methods.contains(0x02) else {
                        proxy.record { $0.authFailures += 1 }
                        socksClose(context, [0x05, 0xFF])
                        return
                    }
                    send(context, [0x05, 0x02])
                    state = .socksAuth
                } else {
                    guard methods.contains(0x00) else { socksClose(context, [0x05, 0xFF]); return }
                    send(context, [0x05, 0x00])
                    state = .request
                }
            case .socksAuth:
                guard buffer.count >= 2 else { return }
                let userLength = Int(buffer[1])
                guard buffer.count >= 3 + userLength else { return }
                let passwordLength = Int(buffer[2 + userLength])
                guard buffer.count >= 3 + userLength + passwordLength else { return }
                let user = String(decoding: buffer[2..<(2 + userLength)], as: UTF8.self)
                let password = String(decoding: buffer[(3 + userLength)..<(3 + userLength + passwordLength)], as: UTF8.self)
                buffer.removeFirst(3 + userLength + passwordLength)
                proxy.record { $0.credentialsSeen.append("\(user):\(password)") }
                guard let credentials = proxy.credentials, credentials.user == user, credentials.password == password
                else {
                    proxy.record { $0.authFailures += 1 }
                    socksClose(context, [0x01, 0x01])
                    return
                }
                send(context, [0x01, 0x00])
                state = .request
            case .request:
                guard buffer.count >= 5 else { return }
                let addressType = buffer[3]
                let host: String
                let length: Int
                switch addressType {
                case 0x01:
                    length = 4 + 4 + 2
                    guard buffer.count >= length else { return }
                    host = buffer[4..<8].map(String.init).joined(separator: ".")
                case 0x04:
                    length = 4 + 16 + 2
                    guard buffer.count >= length else { return }
                    var groups: [String] = []
                    for i in stride(from: 4, to: 20, by: 2) {
                        groups.append(String(UInt16(buffer[i]) << 8 | UInt16(buffer[i + 1]), radix: 16))
                    }
                    host = groups.joined(separator: ":") == "0:0:0:0:0:0:0:1" ? "::1" : groups.joined(separator: ":")
                case 0x03:
                    length = 4 + 1 + Int(buffer[4]) + 2
                    guard buffer.count >= length else { return }
                    host = String(decoding: buffer[5..<(5 + Int(buffer[4]))], as: UTF8.self)
                default:
                    socksClose(context, [0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
                    return
                }
                let port = Int(buffer[length - 2]) << 8 | Int(buffer[length - 1])
                buffer.removeFirst(length)
                let target = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
                proxy.record {
                    $0.targets.append(target)
                    $0.socksAddressTypes.append(addressType)
                }
                if case .refuse(let code) = proxy.behaviour {
                    socksClose(context, [0x05, UInt8(code), 0x00, 0x01, 0, 0, 0, 0, 0, 0])
                    return
                }
                guard let destination = Self.loopbackHostPort(target) else {
                    socksClose(context, [0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
                    return
                }
                dial(context: context, host: destination.host, port: destination.port,
                     success: [0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0, 0],
                     failure: [0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
                return
            case .connecting, .relaying, .closed:
                return
            }
        }
    }

    private func socksClose(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        state = .closed
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    // MARK: relay

    private func dial(context: ChannelHandlerContext, host: String, port: Int, success: [UInt8], failure: [UInt8]) {
        state = .connecting
        let front = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let contextBox = NIOLoopBound(context, eventLoop: context.eventLoop)
        let proxy = self.proxy
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { peer in
                peer.eventLoop.makeCompletedFuture {
                    try peer.pipeline.syncOperations.addHandler(BackHandler(front: front))
                }
            }
            .connect(host: host, port: port)
            .hop(to: context.eventLoop)
            .whenComplete { result in
                let handler = handler.value
                let context = contextBox.value
                switch result {
                case .success(let peer):
                    guard case .connecting = handler.state else {
                        peer.close(promise: nil)
                        return
                    }
                    proxy.record { $0.tunnels += 1 }
                    handler.state = .relaying(peer)
                    handler.send(context, success)
                    if !handler.buffer.isEmpty {
                        peer.writeAndFlush(ByteBuffer(bytes: handler.buffer), promise: nil)
                        handler.buffer = []
                    }
                case .failure:
                    switch proxy.kind {
                    case .connect: handler.reply(context, String(decoding: failure, as: UTF8.self))
                    case .socks5: handler.socksClose(context, failure)
                    }
                }
            }
    }
}

private final class BackHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let front: any Channel

    init(front: any Channel) { self.front = front }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        front.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        front.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
