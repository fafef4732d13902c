import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL

/// Serves one HTTP/1.1 connection (requests one after another, ordered by `HTTPServerPipelineHandler`) or one HTTP/2
/// stream (behind `HTTP2FramePayloadToHTTP1ServerCodec`). The request is routed when its head arrives; the body is
/// consumed (hashed, collected or dropped) and the response starts when the request has ended.
final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let core: ServerCore
    private let connection: ConnectionInfo
    private var context: ChannelHandlerContext?

    private struct Request {
        var head: HTTPRequestHead
        var rawPath: String
        var path: String
        var query: String?
        var params: [String: String]
        var authenticatedBy: String?
        var acceptsTable: Bool
    }

    private enum Action {
        case json(HTTPResponseStatus, JSON)
        case text(HTTPResponseStatus, String)
        case echo
        case create(Resource, namespace: String?)
        case watch(Resource, namespace: String?, since: Int?, timeoutSeconds: Int?)
        case large(bytes: Int)
        case slow(delayMilliseconds: Int, chunks: Int)
        case reset(beforeHeaders: Bool)
        case goAway
        case redirect
        case stats
        case status(Int)
        case forbidRules(ForbiddenRule?, clear: Bool)
        /// A service or pod proxy request with a loopback backend (`ServiceProxy/`).
        case proxy(ServiceProxyTarget, ProxyBackend)
        case movedPermanently(location: String)
    }

    private enum Body {
        case discard
        case hash(SHA256, length: Int)
        case collect(ByteBuffer, limit: Int)
        case tooLarge
    }

    private var request: Request?
    /// Between a request's head and its end.
    private var awaitingEnd = false
    private var action: Action?
    private var body: Body = .discard
    private var keepAlive = true
    /// Bumped whenever a streaming response ends, so late callbacks (watch events, timers) can tell they are stale.
    private var generation = 0
    private var streamCleanup: (() -> Void)?
    private var largeList: LargeListGenerator?
    private var pumping = false
    private var exchange: BackendExchange?

    private var isH2: Bool { connection.protocolName == "h2" }

    init(core: ServerCore, connection: ConnectionInfo) {
        self.core = core
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopStreaming()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        if awaitingEnd {
            awaitingEnd = false
            core.recordAbandonedRequest()
        }
        stopStreaming()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A declined upgrade is answered as a plain request (it arrives next).
        if error is StreamingUpgradeDeclined { return }
        stopStreaming()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, largeList != nil {
            pumpLargeList()
        }
        exchange?.setReading(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            startRequest(head, context: context)
        case .body(let buffer):
            switch body {
            case .discard, .tooLarge:
                break
            case .hash(var hasher, let length):
                buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                body = .hash(hasher, length: length + buffer.readableBytes)
            case .collect(var collected, let limit):
                if collected.readableBytes + buffer.readableBytes > limit {
                    body = .tooLarge
                } else {
                    var buffer = buffer
                    collected.writeBuffer(&buffer)
                    body = .collect(collected, limit: limit)
                }
            }
        case .end:
            awaitingEnd = false
            guard let request, let action else { return }
            perform(action, request: request, context: context)
        }
    }

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let target = head.uri
        let rawPath: String
        let query: String?
        if let q = target.firstIndex(of: "?") {
            rawPath = String(target[..<q])
            query = String(target[target.index(after: q)...])
        } else {
            rawPath = target
            query = nil
        }
        let path = rawPath.removingPercentEncoding ?? rawPath
        var params: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let plus = s.replacingOccurrences(of: "+", with: " ")
                return plus.removingPercentEncoding ?? plus
            }
            params[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }

        var authenticatedBy: String?
        if let authorization = head.headers.first(name: "authorization"),
            let method = core.authenticate(authorization: authorization)
        {
            authenticatedBy = method
        } else if connection.hasClientCertificate {
            authenticatedBy = "certificate"
        }

        let accept = head.headers[canonicalForm: "accept"].joined(separator: ",")
        let request = Request(
            head: head,
            rawPath: rawPath,
            path: path,
            query: query,
            params: params,
            authenticatedBy: authenticatedBy,
            acceptsTable: accept.contains("as=Table")
        )
        self.request = request
        awaitingEnd = true
        self.keepAlive = isH2 || head.isKeepAlive
        core.recordRequest(path: path)

        let action = route(request)
        self.action = action
        if core.configuration.unauthorizedBeforeBody, case .json(.unauthorized, _) = action {
            perform(action, request: request, context: context)  // the rest of the body is discarded
            return
        }
        switch action {
        case .echo:
            body = .hash(SHA256(), length: 0)
        case .create, .proxy:
            body = .collect(context.channel.allocator.buffer(capacity: 1024), limit: 8 << 20)
        default:
            body = .discard
        }
        if !isH2, head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
    }

    // MARK: Routing

    private static let anonymousPaths: Set<String> = ["/healthz", "/livez", "/readyz"]

    private func route(_ request: Request) -> Action {
        let method = request.head.method
        let path = request.path
        if core.configuration.requireAuth, request.authenticatedBy == nil, !Self.anonymousPaths.contains(path) {
            return .json(.unauthorized, Documents.unauthorized)
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)

        if segments.first == "standin" {
            return routeStandIn(Array(segments.dropFirst()), method: method, request: request)
        }
        // A service or pod with a loopback backend (a pod whose podIP is loopback, selected by the service) is
        // proxied to it as the apiserver would; see ServiceProxy/.
        if let target = ServiceProxyTarget.parse(rawPath: request.rawPath) {
            switch core.store.resolve(target) {
            case .echo:
                break
            case .unavailable(let message):
                return .json(.serviceUnavailable, Documents.status(code: 503, message: message))
            case .backend(let backend):
                // The apiserver redirects an empty proxy path to the one with a slash (kubernetes issue 4958).
                if target.path.isEmpty, method == .GET || method == .HEAD {
                    return .movedPermanently(location: request.rawPath + "/" + (request.query.map { "?" + $0 } ?? ""))
                }
                return .proxy(target, backend)
            }
        }
        // Otherwise the proxy subresource (`…/services/[scheme:]name[:port]/proxy/…`, pods, nodes) is answered by an
        // echo "backend", so tests can see exactly which path, query and headers arrived.
        if segments.count >= 4, segments[0] == "api", segments[1] == "v1",
            let proxyIndex = segments.firstIndex(of: "proxy"), proxyIndex >= 4,
            ["services", "pods", "nodes"].contains(segments[proxyIndex - 2])
        {
            return .echo
        }
        guard method == .GET || segments.first == "api" || segments.first == "apis" else {
            return .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
        }
        switch segments {
        case []:
            return .json(.ok, Documents.rootPaths)
        case ["readyz"] where !core.isReady:
            return .text(.internalServerError, "[-]etcd failed: reason withheld\nreadyz check failed\n")
        case ["healthz"], ["livez"], ["readyz"]:
            return .text(.ok, "ok")
        case ["version"]:
            return .json(.ok, Documents.version)
        case ["api"]:
            return getOnly(method, .json(.ok, Documents.apiVersions(serverAddress: "127.0.0.1:\(core.port)")))
        case ["apis"]:
            return getOnly(method, .json(.ok, Documents.apiGroupList))
        case ["apis", "apps"]:
            return getOnly(method, .json(.ok, Documents.appsAPIGroup))
        case ["api", "v1"]:
            return getOnly(method, .json(.ok, Documents.coreResourceList))
        case ["apis", "apps", "v1"]:
            return getOnly(method, .json(.ok, Documents.appsResourceList))
        default:
            break
        }
        if segments.count > 2, segments[0] == "api", segments[1] == "v1" {
            return routeResources(Array(segments.dropFirst(2)), group: [.pods, .configmaps, .namespaces, .services], request: request)
        }
        if segments.count > 3, segments[0] == "apis", segments[1] == "apps", segments[2] == "v1" {
            return routeResources(Array(segments.dropFirst(3)), group: [.deployments], request: request)
        }
        if segments.count > 3, segments[0] == "apis", segments[1] == "discovery.k8s.io", segments[2] == "v1" {
            return routeResources(Array(segments.dropFirst(3)), group: [.endpointslices], request: request)
        }
        return .json(.notFound, Documents.notFound(path: path))
    }

    private func getOnly(_ method: HTTPMethod, _ action: Action) -> Action {
        method == .GET ? action : .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
    }

    private func routeResources(_ rest: [String], group: [Resource], request: Request) -> Action {
        let method = request.head.method
        let notFound = Action.json(.notFound, Documents.notFound(path: request.path))
        var namespace: String?
        var rest = rest
        if rest.count >= 3, rest[0] == "namespaces" {
            namespace = rest[1]
            rest.removeFirst(2)
        }
        guard let first = rest.first, let resource = Resource(rawValue: first), group.contains(resource) else {
            // /api/v1/namespaces/{name} addresses the namespace object itself.
            if rest.count == 2, rest[0] == "namespaces", group.contains(.namespaces) {
                return objectAction(.namespaces, namespace: nil, name: rest[1], method: method)
            }
            return notFound
        }
        if namespace != nil, !resource.namespaced { return notFound }
        if let verb = Self.verb(method: method, isCollection: rest.count == 1, params: request.params),
            core.isForbidden(verb: verb, resource: resource.rawValue, namespace: namespace)
        {
            let user = connection.clientCertificateCN ?? request.authenticatedBy.flatMap { $0.hasPrefix("basic:") ? String($0.dropFirst(6)) : nil }
            return .json(.forbidden, Documents.forbidden(verb: verb, resource: resource, namespace: namespace, user: user ?? "standin-user"))
        }
        switch rest.count {
        case 1:
            switch method {
            case .GET:
                let watch = request.params["watch"].map { $0 == "1" || $0 == "true" } ?? false
                if watch {
                    let since = request.params["resourceVersion"].flatMap { Int($0) }
                    let timeout = request.params["timeoutSeconds"].flatMap { Int($0) }
                    return .watch(resource, namespace: namespace, since: since, timeoutSeconds: timeout)
                }
                if resource == .configmaps, namespace == "big" {
                    return .large(bytes: core.configuration.largeListBytes)
                }
                var (items, rv) = core.store.list(resource, namespace: namespace)
                if let selector = request.params["labelSelector"] {
                    items = items.filter { LabelSelector.matches(selector, object: $0) }
                }
                if request.acceptsTable {
                    return .json(.ok, Documents.table(resource, objects: items, resourceVersion: rv))
                }
                return .json(.ok, Documents.list(resource, items: items, resourceVersion: rv))
            case .POST:
                return .create(resource, namespace: namespace)
            default:
                return .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
            }
        case 2:
            return objectAction(resource, namespace: namespace, name: rest[1], method: method)
        case 3 where resource == .pods && ["exec", "attach", "portforward"].contains(rest[2]):
            // Streaming subresources that reach here were not upgraded (StreamingUpgrader declined or no Upgrade).
            guard core.store.get(.pods, namespace: namespace, name: rest[1]) != nil else {
                return .json(.notFound, Documents.objectNotFound(.pods, name: rest[1]))
            }
            return .json(.badRequest, Documents.status(code: 400, message: "Upgrade request required"))
        default:
            return notFound
        }
    }

    /// The RBAC verb of a request on a resource path (nil for subresources and methods the stand-in does not check).
    private static func verb(method: HTTPMethod, isCollection: Bool, params: [String: String]) -> String? {
        switch (method, isCollection) {
        case (.GET, true): return (params["watch"] == "1" || params["watch"] == "true") ? "watch" : "list"
        case (.GET, false): return "get"
        case (.POST, true): return "create"
        case (.DELETE, false): return "delete"
        default: return nil
        }
    }

    private func objectAction(_ resource: Resource, namespace: String?, name: String, method: HTTPMethod) -> Action {
        switch method {
        case .GET:
            guard let object = core.store.get(resource, namespace: namespace, name: name) else {
                return .json(.notFound, Documents.objectNotFound(resource, name: name))
            }
            if request?.acceptsTable == true {
                return .json(.ok, Documents.table(resource, objects: [object], resourceVersion: nil))
            }
            return .json(.ok, object)
        case .DELETE:
            do {
                return .json(.ok, try core.store.delete(resource, namespace: namespace, name: name))
            } catch {
                return .json(.notFound, Documents.objectNotFound(resource, name: name))
            }
        default:
            return .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
        }
    }

    private func routeStandIn(_ rest: [String], method: HTTPMethod, request: Request) -> Action {
        switch rest.first {
        case "echo":
            return .echo
        case "large" where rest.count == 1:
            let bytes = request.params["bytes"].flatMap { Int($0) } ?? core.configuration.largeListBytes
            return getOnly(method, .large(bytes: max(0, bytes)))
        case "slow" where rest.count == 1:
            let delay = request.params["delayMs"].flatMap { Int($0) } ?? 100
            let chunks = request.params["chunks"].flatMap { Int($0) } ?? 5
            return getOnly(method, .slow(delayMilliseconds: max(0, delay), chunks: max(0, chunks)))
        case "reset" where rest.count == 1:
            return getOnly(method, .reset(beforeHeaders: request.params["before"] == "headers"))
        case "stats" where rest.count == 1:
            return getOnly(method, .stats)
        case "forbid" where rest.count == 1:
            switch method {
            case .GET:
                return .forbidRules(nil, clear: false)
            case .DELETE:
                return .forbidRules(nil, clear: true)
            case .POST:
                guard let resource = request.params["resource"], !resource.isEmpty else {
                    return .json(.badRequest, Documents.status(code: 400, message: "resource is required"))
                }
                let rule = ForbiddenRule(verb: request.params["verb"] ?? "list", resource: resource, namespace: request.params["namespace"])
                return .forbidRules(rule, clear: false)
            default:
                return .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
            }
        case "goaway" where rest.count == 1:
            return method == .POST ? .goAway : .json(.methodNotAllowed, Documents.methodNotAllowed(method.rawValue))
        case "redirect" where rest.count == 1:
            return .redirect
        case "status" where rest.count == 2:
            guard let code = Int(rest[1]), (200..<600).contains(code) else {
                return .json(.badRequest, Documents.status(code: 400, message: "status must be 200...599"))
            }
            return .status(code)
        default:
            return .json(.notFound, Documents.notFound(path: request.path))
        }
    }

    // MARK: Responses

    private func perform(_ action: Action, request: Request, context: ChannelHandlerContext) {
        switch action {
        case .json(let status, let json):
            respond(status: status, json: json)
        case .text(let status, let text):
            respond(status: status, contentType: "text/plain; charset=utf-8", body: text)
        case .status(let code):
            let status = HTTPResponseStatus(statusCode: code)
            if code == 204 || code == 304 {
                respond(status: status, contentType: nil, body: "")
            } else {
                respond(status: status, json: Documents.status(code: code, message: "status \(code) requested"))
            }
        case .redirect:
            respond(
                status: .found,
                contentType: "text/plain; charset=utf-8",
                body: "Found\n",
                extraHeaders: [("location", "\(core.baseURL)/api/v1/namespaces")]
            )
        case .stats:
            respond(status: .ok, json: core.stats.json)
        case .forbidRules(let rule, let clear):
            if clear { core.setForbiddenRules([]) }
            if let rule { core.addForbiddenRule(rule) }
            respond(status: .ok, json: .obj(["rules": .array(core.forbiddenRules.map(\.json))]))
        case .movedPermanently(let location):
            respond(status: .movedPermanently, contentType: "text/html; charset=utf-8",
                    body: "<a href=\"\(HTMLRewriter.escaped(location))\">Moved Permanently</a>.\n\n",
                    extraHeaders: [("location", location)])
        case .proxy(let target, let backend):
            startProxy(target, backend: backend, request: request, context: context)
        case .echo:
            respondEcho(request)
        case .create(let resource, let namespace):
            respondCreate(resource, namespace: namespace)
        case .goAway:
            let promise = context.eventLoop.makePromise(of: Int.self)
            let core = self.core
            promise.completeWithTask { await core.sendGoAway() }
            promise.futureResult.assumeIsolated().whenComplete { [self] result in
                let count = (try? result.get()) ?? 0
                self.respond(status: .ok, json: .obj(["goAwaySent": .int(count)]))
            }
        case .watch(let resource, let namespace, let since, let timeout):
            startWatch(
                resource, namespace: namespace, since: since, timeoutSeconds: timeout, table: request.acceptsTable,
                labelSelector: request.params["labelSelector"])
        case .large(let bytes):
            writeStreamingHead(status: .ok, contentType: "application/json")
            largeList = LargeListGenerator(totalBytes: bytes, resourceVersion: core.store.currentResourceVersion)
            pumpLargeList()
        case .slow(let delay, let chunks):
            writeStreamingHead(status: .ok, contentType: "text/plain; charset=utf-8")
            context.flush()
            scheduleSlowChunk(1, of: chunks, delay: .milliseconds(Int64(delay)), generation: generation)
        case .reset(let beforeHeaders):
            resetResponse(context: context, beforeHeaders: beforeHeaders)
        }
    }

    private func baseHeaders(contentType: String?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        if let contentType { headers.add(name: "content-type", value: contentType) }
        headers.add(name: "cache-control", value: "no-cache, private")
        headers.add(name: "x-standin-protocol", value: connection.protocolName)
        if !isH2, !keepAlive { headers.add(name: "connection", value: "close") }
        return headers
    }

    private func respond(status: HTTPResponseStatus, json: JSON) {
        respond(status: status, contentType: "application/json", body: json.serialized + "\n")
    }

    private func respond(
        status: HTTPResponseStatus,
        contentType: String?,
        body: String,
        extraHeaders: [(String, String)] = []
    ) {
        guard let context, let request else { return }
        var headers = baseHeaders(contentType: contentType)
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        if status != .noContent, status != .notModified {
            headers.add(name: "content-length", value: String(body.utf8.count))
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.head.version, status: status, headers: headers))), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        writeEnd()
    }

    private func writeStreamingHead(status: HTTPResponseStatus, contentType: String) {
        guard let context, let request else { return }
        var headers = baseHeaders(contentType: contentType)
        if !isH2 { headers.add(name: "transfer-encoding", value: "chunked") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.head.version, status: status, headers: headers))), promise: nil)
    }

    /// Ends the current response and readies the handler for the next request (HTTP/1.1 keep-alive).
    private func writeEnd() {
        guard let context else { return }
        stopStreaming()
        let keepAlive = self.keepAlive
        self.request = nil
        self.action = nil
        self.body = .discard
        let future = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !isH2, !keepAlive {
            let channel = context.channel
            future.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    private func stopStreaming() {
        generation += 1
        largeList = nil
        exchange = nil
        let cleanup = streamCleanup
        streamCleanup = nil
        cleanup?()
    }

    // MARK: Service and pod proxy

    private func startProxy(_ target: ServiceProxyTarget, backend: ProxyBackend, request: Request, context: ChannelHandlerContext) {
        var bodyBuffer: ByteBuffer?
        switch body {
        case .tooLarge:
            respond(status: .payloadTooLarge, json: Documents.status(code: 413, message: "request body too large"))
            return
        case .collect(let buffer, _):
            bodyBuffer = buffer
        default:
            break
        }
        let path = target.path.isEmpty ? "/" : target.path
        let uri = path + (request.query.map { "?" + $0 } ?? "")
        var forwardedURI = ProxyURLRewriter.cleanJoin(target.prefix, target.path)
        if target.path.hasSuffix("/"), !forwardedURI.hasSuffix("/") { forwardedURI += "/" }
        let client = (context.channel.parent ?? context.channel).remoteAddress?.ipAddress
        let head = ProxyHeaders.backendRequest(
            request.head, uri: uri, clientAddress: client, forwardedURI: forwardedURI,
            backendHostPort: backend.hostPort, bodyLength: bodyBuffer?.readableBytes ?? 0)
        let rewriter = ProxyURLRewriter(
            pathPrepend: target.prefix, backendHost: backend.hostPort,
            requestHost: request.head.headers.first(name: "host") ?? "")
        let generation = self.generation
        let events = BackendExchange.Events(
            head: { [weak self] head in
                guard let self, self.generation == generation else { return }
                self.writeProxiedHead(head)
            },
            body: { [weak self] buffer in
                guard let self, self.generation == generation, let context = self.context else { return }
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                if !context.channel.isWritable { self.exchange?.setReading(false) }
            },
            end: { [weak self] in
                guard let self, self.generation == generation else { return }
                self.writeEnd()
            },
            failed: { [weak self] message, started in
                guard let self, self.generation == generation else { return }
                if started {
                    // Part of the response is out: all the client can be told is that it broke off.
                    self.stopStreaming()
                    self.context?.close(promise: nil)
                } else {
                    self.respond(status: .serviceUnavailable, json: Documents.status(code: 503, message: message))
                }
            })
        let exchange = BackendExchange(
            eventLoop: context.eventLoop, backend: backend, request: head, body: bodyBuffer, rewriter: rewriter, events: events)
        self.exchange = exchange
        streamCleanup = { exchange.cancel() }
        exchange.start(tlsContext: backend.scheme == "https" ? core.backendTLSContext : nil)
    }

    private func writeProxiedHead(_ head: HTTPResponseHead) {
        guard let context, let request else { return }
        var headers = head.headers
        headers.add(name: "x-standin-protocol", value: connection.protocolName)
        let hasBody = request.head.method != .HEAD && head.status.code >= 200 && head.status != .noContent && head.status != .notModified
        if !isH2 {
            if hasBody, !headers.contains(name: "content-length") { headers.add(name: "transfer-encoding", value: "chunked") }
            if !keepAlive { headers.add(name: "connection", value: "close") }
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.head.version, status: head.status, headers: headers))), promise: nil)
    }

    private func respondEcho(_ request: Request) {
        guard case .hash(let hasher, let length) = body else { return }
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        var headers: [JSON.Member] = []
        for (name, value) in request.head.headers {
            let key = name.lowercased()
            if let index = headers.firstIndex(where: { $0.key == key }), case .array(var values) = headers[index].value {
                values.append(.string(value))
                headers[index].value = .array(values)
            } else {
                headers.append(.init(key: key, value: .array([.string(value)])))
            }
        }
        let json: JSON = .obj([
            "method": .string(request.head.method.rawValue),
            "path": .string(request.path),
            "rawPath": .string(request.rawPath),
            "requestURI": .string(request.head.uri),
            "query": request.query.map(JSON.string) ?? .string(""),
            "headers": .object(headers),
            "bodyLength": .int(length),
            "bodySHA256": .string(digest),
            "protocol": .string(connection.protocolName),
            "clientCertificateCN": connection.clientCertificateCN.map(JSON.string) ?? .null,
            "authenticatedBy": request.authenticatedBy.map(JSON.string) ?? .null,
        ])
        respond(status: .ok, json: json)
    }

    private func respondCreate(_ resource: Resource, namespace: String?) {
        switch body {
        case .tooLarge:
            respond(status: .payloadTooLarge, json: Documents.status(code: 413, message: "request body too large"))
        case .collect(let buffer, _):
            let contentType = request?.head.headers.first(name: "content-type")?.lowercased() ?? "application/json"
            // Protobuf (kubectl's default for built-in types) and CBOR are not implemented; anything else is parsed as JSON.
            guard !contentType.contains("protobuf"), !contentType.contains("cbor") else {
                respond(
                    status: .unsupportedMediaType,
                    json: Documents.status(code: 415, message: "the stand-in only accepts JSON bodies, not \(contentType)")
                )
                return
            }
            do {
                let json = try JSON.parse(buffer.readableBytesView)
                let created = try core.store.create(resource, namespace: namespace, body: json)
                respond(status: .created, json: created)
            } catch StoreError.alreadyExists(let resource, let name) {
                respond(status: .conflict, json: Documents.alreadyExists(resource, name: name))
            } catch StoreError.invalid(let message) {
                respond(status: .unprocessableEntity, json: Documents.status(code: 422, message: message))
            } catch {
                respond(status: .badRequest, json: Documents.status(code: 400, message: "invalid JSON body: \(error)"))
            }
        default:
            respond(status: .internalServerError, json: Documents.status(code: 500, message: "no body state"))
        }
    }

    // MARK: Streaming responses

    private func startWatch(
        _ resource: Resource, namespace: String?, since: Int?, timeoutSeconds: Int?, table: Bool, labelSelector: String? = nil
    ) {
        guard let context else { return }
        writeStreamingHead(status: .ok, contentType: "application/json")
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let generation = self.generation
        let (id, initial) = core.store.watch(resource, namespace: namespace, sinceResourceVersion: since) { event in
            if let labelSelector, !LabelSelector.matches(labelSelector, object: event.object) { return }
            eventLoop.execute {
                handler.value.deliver(event, resource: resource, table: table, generation: generation)
            }
        }
        for event in initial where labelSelector.map({ LabelSelector.matches($0, object: event.object) }) ?? true {
            writeWatchEvent(event, resource: resource, table: table)
        }
        context.flush()
        var timeout: Scheduled<Void>?
        if let timeoutSeconds, timeoutSeconds > 0 {
            timeout = eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(timeoutSeconds))) { [self] in
                if self.generation == generation { self.writeEnd() }
            }
        }
        let store = core.store
        streamCleanup = {
            store.unwatch(id)
            timeout?.cancel()
        }
    }

    private func deliver(_ event: WatchEvent, resource: Resource, table: Bool, generation: Int) {
        guard generation == self.generation, let context else { return }
        writeWatchEvent(event, resource: resource, table: table)
        context.flush()
    }

    private func writeWatchEvent(_ event: WatchEvent, resource: Resource, table: Bool) {
        guard let context else { return }
        var event = event
        if table {
            event.object = Documents.table(resource, objects: [event.object], resourceVersion: event.resourceVersion)
        }
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: event.line)))), promise: nil)
    }

    private func pumpLargeList() {
        guard let context, !pumping else { return }
        pumping = true
        defer { pumping = false }
        var written = 0
        while largeList != nil, context.channel.isWritable, written < 32 {
            guard let chunk = largeList?.next(chunkSize: 32 << 10, allocator: context.channel.allocator) else {
                largeList = nil
                writeEnd()
                return
            }
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            written += 1
        }
        if largeList != nil, context.channel.isWritable {
            // Still writable after a batch: yield to the event loop, then carry on.
            let generation = self.generation
            context.eventLoop.assumeIsolated().execute { [self] in
                if self.generation == generation { self.pumpLargeList() }
            }
        }
    }

    private func scheduleSlowChunk(_ index: Int, of total: Int, delay: TimeAmount, generation: Int) {
        guard let context else { return }
        if index > total {
            writeEnd()
            return
        }
        let task = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard self.generation == generation, let context = self.context else { return }
            let line = "chunk \(index)/\(total)\n"
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: line)))), promise: nil)
            self.scheduleSlowChunk(index + 1, of: total, delay: delay, generation: generation)
        }
        streamCleanup = { task.cancel() }
    }

    /// h2: HEADERS, then RST_STREAM(INTERNAL_ERROR). http/1.1: headers and a partial chunk, then the TCP connection
    /// is closed underneath TLS (no close_notify, no terminating chunk). With `beforeHeaders` (`?before=headers`)
    /// nothing of the response is sent before the reset.
    private func resetResponse(context: ChannelHandlerContext, beforeHeaders: Bool) {
        if !beforeHeaders {
            writeStreamingHead(status: .ok, contentType: "application/json")
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "{\"partial\":")))), promise: nil)
        }
        if isH2 {
            if let codec = try? context.pipeline.syncOperations.context(handlerType: HTTP2FramePayloadToHTTP1ServerCodec.self) {
                codec.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.rstStream(.internalError)), promise: nil)
            } else {
                context.close(promise: nil)
            }
        } else if let ssl = try? context.pipeline.syncOperations.context(handlerType: NIOSSLServerHandler.self) {
            ssl.close(promise: nil)
        } else {
            context.close(promise: nil)
        }
    }
}

/// Equality-based label selectors (`a=b,c==d,e!=f`), the subset tests and proxyd's discovery use.
enum LabelSelector {
    static func matches(_ selector: String, object: JSON) -> Bool {
        for term in selector.split(separator: ",") {
            let negated = term.contains("!=")
            let parts = term.replacingOccurrences(of: "!=", with: "=").replacingOccurrences(of: "==", with: "=")
                .split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { return false }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            let actual = object["metadata"]?["labels"]?[key]?.stringValue
            if negated ? actual == value : actual != value { return false }
        }
        return true
    }
}
