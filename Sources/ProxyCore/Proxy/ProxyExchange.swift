import Dispatch
import FoundationEssentials
import Logging

/// One client request and its response: routing, filtering, then streaming through an `UpstreamStream`.
/// Confined to its connection's loop.
///
/// Backpressure, upstream → client: response bytes are written to the client socket at once and reported to the
/// upstream (`consumed`) as soon as the socket's queue is under `clientLowWater` and the socket is not backed up,
/// otherwise when it drains; so the apiserver can send at most one flow-control window (or the HTTP/1 read
/// high-water mark) beyond what the client took. Client → upstream: the client socket is paused while the stream's body queue is above its high-water mark.
///
/// Exec plugin credentials: a request that finds the credential expired waits (off the loop) for the refresh, its
/// body held meanwhile. A 401 to a request sent with the plugin's credential refreshes it (single-flight); a
/// replayable request (no body, or a body fully received and at most `replayLimit` bytes, copied only for such
/// requests) is then sent once more with the new credential instead of relaying the 401.
final class ProxyExchange: UpstreamResponseHandler {
    static let clientLowWater = 64 * 1024
    /// Largest request body kept for a replay after a 401.
    static let replayLimit = 64 * 1024

    // Stored properties are laid out in the order declared: the 8-byte ones first, then each optional integer
    // followed by flags that fill its padding (an exchange lives as long as its request: hours for a watch).
    private unowned let connection: ClientConnection
    /// The client's request head; its header fields are dropped once the response head went out (nothing reads them
    /// after routing, filtering and a possible retry after 401), so an idle watch keeps only its method and target.
    private(set) var head: HTTPRequestHead
    private var stream: UpstreamStream?
    private var unconsumed = 0
    private let startTime = DispatchTime.now()
    private var responseStatus = 0
    private var responseBytes = 0
    private var upstreamPath = ""
    /// A copy of the request body for a replay; `nil` when there is none or it outgrew `replayLimit`.
    private var replayBody: [[UInt8]]?
    private var replayBytes = 0
    /// Body bytes held while waiting for a credential refresh (`awaitingCredential`).
    private var heldBody: [[UInt8]] = []
    private var heldBytes = 0
    /// The configuration version current when the request started, with this loop's pool for it: the request
    /// uses them to its end, whatever reloads happen meanwhile.
    private let upstream: LoopUpstream
    /// The plugin credential generation this request was sent with (`nil`: not sent with a plugin credential).
    private var pluginGeneration: UInt64?
    private(set) var requestComplete = false
    private var responseStarted = false
    private var chunkedResponse = false
    private var closeDelimited = false
    private var keepAlive: Bool
    private var finished = false
    private var discardBody = false
    /// The revision of the configured credentials the request was sent with (nil: the client's own
    /// `Authorization`, or not sent upstream).
    private var credentialRevision: UInt64?
    /// Whether the one retry after a 401 was used.
    private var retried = false
    /// Waiting for a credential refresh before (re)sending: body bytes are held in `heldBody` meanwhile.
    private var awaitingCredential = false
    private var heldPaused = false
    /// A 401 came before the (small, `Content-Length`-framed) body was complete: retry once it is.
    private var replayWhenBodyEnds = false
    private(set) var kind = RequestKind.regular
    /// The service or pod of a request on its own host (`*.svc.localhost`): its responses are rewritten to stay there.
    private var proxyTarget: ProxyTargetBox?
    /// Gathering the service index page.
    private var serviceIndexLoader: ServiceIndexLoader?

    init(connection: ClientConnection, head: HTTPRequestHead) {
        self.connection = connection
        self.head = head
        keepAlive = head.keepAlive
        upstream = connection.context.current
        connection.context.metrics.requestStarted()
    }

    private var shared: SharedProxyState { connection.context.shared }
    private var version: ConfigurationVersion { upstream.version }
    private var metrics: LoopMetrics { connection.context.metrics }

    private var isHead: Bool { head.method == "HEAD" }

    /// Decides what to do with the request: answer locally or start the upstream exchange. The target comes from
    /// `RequestRouter` (Host + path, Routing/); then the filter and the cross-origin guard have their say.
    func begin() {
        guard let target = RequestTarget(head.target) else {
            keepAlive = false
            respondLocally(.badRequest(status: 400, reason: "Bad Request: invalid request-target"))
            return
        }
        if let refusal = shared.policy.readOnlyRefusal(method: head.method, isUpgrade: head.isUpgrade) {
            respondLocally(refusal)
            return
        }
        let hosts = connection.context.hostClasses
        let hostHeader = head.headers.first("host")
        let host = target.host ?? hostHeader ?? ""
        var hostClass = hosts.hostClass(host)
        if target.host != nil, let hostHeader, case .invalid(let reason) = hosts.hostClass(hostHeader) {
            hostClass = .invalid(reason)  // RFC 9112 §3.2: an invalid Host is refused even when the target overrides it
        }
        switch version.requestRouter.route(method: head.method, target: target, host: hostClass, headers: head.headers) {
        case .invalidHost(let reason):
            keepAlive = false
            shared.logger.info("rejecting request with invalid Host", metadata: [LogKeys.connectionID: "\(connection.id)", "reason": "\(reason)"])
            respondLocally(.invalidHost(reason))
        case .methodNotAllowed(let method):
            respondLocally(.methodNotAllowed(method))
        case .staticFile(let path):
            let files = version.requestRouter.staticFiles
            respondLocally(files?.respond(path: path, rawQuery: target.rawQuery, method: head.method, headers: head.headers) ?? .notFound)
        case .badRequest(let why):
            respondLocally(.badRequest(status: 400, reason: "Bad Request: \(why)"))
        case .notFound:
            respondLocally(.notFound)
        case .redirect(let location):
            respondLocally(.movedPermanently(to: location))
        case .serviceIndex:
            guard passesFilter(path: "/", host: host, hostClass: hostClass) else { return }
            startServiceIndex(hostClass: hostClass)
        case .forward(let upstreamTarget, let filterPath, let proxyTarget):
            guard passesFilter(path: filterPath, host: host, hostClass: hostClass) else { return }
            self.proxyTarget = proxyTarget.map(ProxyTargetBox.init)
            // Usually the same text as the client's target (`/api/...`): share its storage rather than keep a second
            // copy for as long as the exchange lasts (hours for a watch).
            upstreamPath = upstreamTarget == head.target ? head.target : upstreamTarget
            kind = RequestKind.classify(target: upstreamTarget, isUpgrade: head.isUpgrade)
            if kind == .watch { metrics.values.watches += 1 }
            if kind == .upgrade {
                startUpgrade(upstreamTarget: upstreamTarget)
            } else {
                forward(upstreamTarget: upstreamPath)
            }
        }
    }

    /// kubectl's filter, then the cross-origin guard; answers 403 and returns false when one refuses.
    private func passesFilter(path: String, host: String, hostClass: HostClass) -> Bool {
        guard let filter = connection.context.filterCache else { return true }
        let authority: HostAuthority
        switch hostClass {
        case .ordinary(let a), .target(_, let a): authority = a
        case .invalid: return false
        }
        let (verdict, origin) = filter.check(
            method: head.method, path: path, host: host, browser: OriginGuard.Request(head), authority: authority)
        switch (verdict, origin) {
        case (.accept, .crossOriginAllowed(let from)):
            shared.logger.info("Filter accepting cross-origin \(head.method) \(path) \(host) from \(from) (not readable without CORS)")
        case (.accept, .trusted(let from)):
            shared.logger.info("Filter accepting \(head.method) \(path) \(host) from \(from) (--accept-origins)")
        case (.reject(.origin), .refused(_, let message)):
            metrics.values.filterRejections[FilterRule.origin.metricIndex] += 1
            shared.logger.info("Filter rejecting \(head.method) \(path) \(host): \(message)")
            respondLocally(.crossOriginRefused(message))
            return false
        case (.reject(let rule), _):
            metrics.values.filterRejections[rule.metricIndex] += 1
            shared.logger.info("Filter rejecting \(head.method) \(path) \(host)")
            respondLocally(.forbidden)
            return false
        default:
            break
        }
        return true
    }

    /// A browser opened the proxy's root: list the services (upstream requests from this loop, with the proxy's
    /// credentials), then answer with the page.
    private func startServiceIndex(hostClass: HostClass) {
        var port: String?
        if case .ordinary(let authority) = hostClass, let p = authority.port, !p.isEmpty { port = String(p) }
        let identity = ServiceIndexIdentity(target: version.target)
        let pathPrefix = version.locationRewriter.publicPrefix
        let loader = ServiceIndexLoader(
            upstream: upstream, loop: connection.context.loop, clientIP: connection.peer.ipString
        ) { [weak self] index in
            guard let self, !self.finished else { return }
            self.serviceIndexLoader = nil
            let page = ServiceIndexPage(identity: identity, index: index, proxyPort: port, pathPrefix: pathPrefix)
            self.respondLocally(.serviceIndex(page.html()))
        }
        serviceIndexLoader = loader
        loader.start()
    }

    private func forward(upstreamTarget: String) {
        let hasBody = head.hasBody
        if !hasBody { requestComplete = true }
        if head.expectsContinue && hasBody {
            connection.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        let store = version.credentials
        let credentials = store.current
        if credentials.unavailable != nil, credentials.pluginGeneration == nil, usesConfiguredAuthorization {
            respondLocally(.credentialsUnavailable(credentials.unavailable ?? ""))
            return
        }
        if let generation = credentials.pluginGeneration, usesConfiguredAuthorization {
            if case .contentLength(let length) = head.bodyFraming, length > Self.replayLimit {
                // Too large to replay: no copy.
            } else if hasBody {
                replayBody = []
            }
            if credentials.isExpired(now: Date()) || credentials.unavailable != nil {
                // client-go runs the plugin before using an expired credential; so does proxyd, off the loop. A
                // plugin that never worked yet runs again too, unless it is in its back-off.
                awaitCredential(generation: generation)
                return
            }
        }
        send(credentials: credentials)
    }

    /// Whether the configured `Authorization` is added (a client's own non-empty one wins).
    private var usesConfiguredAuthorization: Bool { (head.headers.first("authorization") ?? "").isEmpty }

    /// Starts the upstream exchange with `credentials`, then hands over any body held meanwhile.
    private func send(credentials: CredentialSnapshot) {
        if let unavailable = credentials.unavailable, usesConfiguredAuthorization {
            respondLocally(.credentialsUnavailable(unavailable))
            return
        }
        let configured = usesConfiguredAuthorization
        pluginGeneration = configured ? credentials.pluginGeneration : nil
        credentialRevision = configured ? credentials.revision : nil
        let headers = HeaderRewriter.upstreamRequestHeaders(
            head.headers, clientIP: connection.peer.ipString, credentials: credentials, isUpgrade: false)
        let request = UpstreamRequest(
            method: head.method, target: upstreamPath, headers: headers, hasBody: head.hasBody)
        let stream = upstream.servers.start(request, handler: self)
        self.stream = stream
        guard !heldBody.isEmpty || (head.hasBody && requestComplete) else { return }
        for chunk in heldBody { stream.sendBody(chunk) }
        heldBody = []
        heldBytes = 0
        if head.hasBody && requestComplete { stream.endBody() }
        if stream.bufferedBodyBytes > UpstreamStream.bodyHighWater {
            stream.bodyPaused = true
            heldPaused = false  // the client stays paused until the stream drains
        } else if heldPaused {
            heldPaused = false
            connection.setBodyBackpressure(false)
        }
    }

    /// Asks for a refreshed plugin credential, then sends with whatever is current.
    private func awaitCredential(generation: UInt64) {
        awaitingCredential = true
        let box = LoopBound(self)
        let loop = connection.context.loop
        version.credentials.refresh(ifStillGeneration: generation) {
            loop.execute {
                let exchange = box.value
                exchange.awaitingCredential = false
                guard !exchange.finished else { return }
                exchange.send(credentials: exchange.version.credentials.current)
            }
        }
    }

    /// Exec, attach, port-forward: a dedicated HTTP/1.1 connection that becomes a byte tunnel after `101`.
    private func startUpgrade(upstreamTarget: String) {
        let credentials = version.credentials.current
        if let unavailable = credentials.unavailable, usesConfiguredAuthorization {
            respondLocally(.credentialsUnavailable(unavailable))
            return
        }
        let headers = HeaderRewriter.upstreamRequestHeaders(
            head.headers, clientIP: connection.peer.ipString, credentials: credentials, isUpgrade: true)
        var wire = HTTPHeaders([("Host", version.target.authority)])
        for field in headers.fields { wire.add(name: field.name, value: field.value) }
        let requestHead = HTTP1Serializer.requestHead(method: head.method, target: upstreamTarget, headers: wire)
        let tlsContext = version.target.scheme == "https" ? version.upgradeTLSContext : nil
        let tunnel = UpgradeTunnel(
            connection: connection, target: version.target, tlsContext: tlsContext, proxy: version.proxy,
            method: head.method, head: requestHead, early: connection.takeTunnelBytes(),
            route: upstream.servers.tunnelRoute()
        ) { [weak self] status in
            self?.responseStatus = status
        }
        requestComplete = true
        discardBody = true
        connection.beginUpgrade(tunnel)
        tunnel.start()
    }

    /// The upgrade ended (tunnel closed, refusal relayed, or failure answered): log it.
    func upgradeFinished() {
        guard !finished else { return }
        finished = true
        logAccess()
    }

    // MARK: request body from the client

    func clientSentBody(_ bytes: [UInt8]) {
        metrics.values.requestBodyBytes += bytes.count
        guard !discardBody else { return }
        if replayBody != nil {
            replayBytes += bytes.count
            if replayBytes <= Self.replayLimit { replayBody?.append(bytes) } else { replayBody = nil }
        }
        if awaitingCredential {
            heldBody.append(bytes)
            heldBytes += bytes.count
            if heldBytes > UpstreamStream.bodyHighWater && !heldPaused {
                heldPaused = true
                connection.setBodyBackpressure(true)
            }
            return
        }
        guard let stream else { return }
        stream.sendBody(bytes)
        if stream.bufferedBodyBytes > UpstreamStream.bodyHighWater {
            stream.bodyPaused = true
            connection.setBodyBackpressure(true)
        }
    }

    func clientEndedBody() {
        requestComplete = true
        if replayWhenBodyEnds, !finished, !discardBody, let generation = pluginGeneration {
            replayWhenBodyEnds = false
            heldBody = replayBody ?? []
            awaitCredential(generation: generation)
            return
        }
        if discardBody {
            if finished { connection.exchangeFinished(self, keepAlive: keepAlive) }
            return
        }
        if head.hasBody { stream?.endBody() }
    }

    func upstreamRequestBodyDrained() {
        connection.setBodyBackpressure(false)
    }

    // MARK: response from the apiserver

    func upstreamDidReceiveHead(status: Int, headers upstreamHeaders: HTTPHeaders) {
        guard !finished else { return }
        if status == 401, let generation = pluginGeneration, !retried {
            retried = true
            var replayable = requestComplete && (!head.hasBody || replayBody != nil)
            if !requestComplete, replayBody != nil, case .contentLength = head.bodyFraming {
                // The rest of a body under the limit is on its way (say after `100 Continue`): wait for it.
                replayable = true
                replayWhenBodyEnds = true
            }
            if replayable {
                // Drop this answer (the stream runs to its end upstream, unread) and send again once refreshed.
                stream?.detach()
                stream = nil
                shared.logger.info("\(head.method) \(upstreamPath): 401 with the exec plugin's credential; refreshing it and retrying once")
                if !replayWhenBodyEnds {
                    heldBody = replayBody ?? []
                    awaitCredential(generation: generation)
                }
                return
            }
            // Not replayable: relay the 401; the next request gets the refreshed credential (client-go).
            shared.logger.info("\(head.method) \(upstreamPath): 401 with the exec plugin's credential; refreshing it")
            version.credentials.refresh(ifStillGeneration: generation) {}
        }
        responseStarted = true
        responseStatus = status
        head.headers = HTTPHeaders()
        var headers = HeaderRewriter.clientResponseHeaders(upstreamHeaders)
        if let proxyTarget {
            TargetResponseRewriter(target: proxyTarget.value, locations: version.locationRewriter).rewrite(&headers)
        } else if let location = headers.first("location"), let local = version.locationRewriter.rewrite(location) {
            headers.replaceOrAdd(name: "Location", value: local)
        }
        let bodyless = isHead || status == 204 || status == 304 || (100..<200).contains(status)
        if bodyless {
            if status == 204 || (100..<200).contains(status) { headers.remove(name: "content-length") }
        } else if headers.contains("content-length") {
            // The length passes through: the body is relayed as is.
        } else if head.version == .http1_1 {
            chunkedResponse = true
            headers.add(name: "Transfer-Encoding", value: "chunked")
        } else {
            closeDelimited = true
            keepAlive = false
        }
        if !requestComplete {
            // The client is still sending; after this response the rest of its body would be read as a new request.
            keepAlive = false
        }
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if head.version == .http1_0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        connection.writeResponseHead(HTTPResponseHead(status: status, reason: "", version: .http1_1, headers: headers))
        if bodyless {
            // The response is complete with its head; whatever the upstream still does with the stream is moot.
            stream?.detach()
            complete()
        }
    }

    func upstreamDidReceiveBody(_ bytes: ByteBuffer) {
        guard !finished, let stream else { return }
        let count = bytes.readableBytes
        responseBytes += count
        if isHead {
            stream.consumed(count)
            return
        }
        if chunkedResponse {
            connection.writeChunk(bytes)
        } else {
            connection.write(bytes)
        }
        metrics.values.responseBodyBytes += count
        unconsumed += count
        // A client whose socket backed up gets the window back only once it drained (`clientDrained`): so proxyd
        // holds at most about one stream window for a client that reads slowly.
        if !connection.socket.isWaitingToWrite && connection.bufferedWriteBytes <= Self.clientLowWater {
            stream.consumed(unconsumed)
            unconsumed = 0
        }
    }

    /// The kernel holds little of what was written to the client: it reads as fast as the response comes.
    var clientIsKeepingUp: Bool { connection.socket.kernelUnsentBytes <= Self.clientLowWater }

    /// The client socket's queue drained: hand the window back to the apiserver. `backedUp`: the socket had said
    /// EAGAIN (a slow client), rather than this loop turn's writes having gone out at once.
    func clientDrained(backedUp: Bool = true) {
        guard unconsumed > 0, let stream else { return }
        stream.consumed(unconsumed, clientBackedUp: backedUp)
        unconsumed = 0
    }

    func upstreamDidEnd() {
        guard !finished else { return }
        if !responseStarted {
            // Cannot happen with a well-behaved server; answer something sane.
            respondLocally(.upstreamFailure(.badGateway("the apiserver sent no response")))
            return
        }
        if chunkedResponse && !isHead { connection.write(HTTP1Serializer.lastChunk) }
        complete()
    }

    func upstreamDidFail(_ failure: UpstreamFailure) {
        guard !finished else { return }
        if responseStarted {
            // Mid-body: the only honest signal is to cut the connection (a chunked body stays unterminated).
            shared.logger.warning("upstream failed mid-response for \(head.method) \(upstreamPath): \(failure)")
            finished = true
            stream?.detach()
            stream = nil
            logAccess()
            connection.abort()
            return
        }
        if case .unavailable = failure {
            // The apiserver is down: the pool logs that (once per 10 s); one line per refused request would flood.
            shared.logger.info("upstream unavailable for \(head.method) \(upstreamPath): \(failure)")
        } else {
            shared.logger.warning("upstream failed for \(head.method) \(upstreamPath): \(failure)")
        }
        stream?.detach()
        stream = nil
        respondLocally(.upstreamFailure(failure))
    }

    // MARK: completion

    private func respondLocally(_ response: LocalResponse) {
        responseStatus = response.status
        responseBytes = response.body.count
        if !isHead { metrics.values.responseBodyBytes += response.body.count }
        if !requestComplete && !head.hasBody { requestComplete = true }
        if response.status >= 400 && !requestComplete {
            // Don't wait for a body nobody will read: answer and close.
            keepAlive = false
        }
        if response.headers.first("connection")?.lowercased() == "close" { keepAlive = false }
        // After an upgrade request's head the parser only collects tunnel bytes: no further request can follow.
        if head.isUpgrade { keepAlive = false }
        connection.writeLocal(response, headOnly: isHead, keepAlive: keepAlive, version: head.version)
        discardBody = true
        complete()
    }

    private func complete() {
        finished = true
        if let stream, unconsumed > 0 {
            stream.consumed(unconsumed)
            unconsumed = 0
        }
        stream?.detach()  // it holds its handler strongly until it ends
        stream = nil
        logAccess()
        if !requestComplete && keepAlive {
            // Still reading the request body (discarded); finish when it ends.
            return
        }
        connection.exchangeFinished(self, keepAlive: keepAlive && requestComplete)
    }

    /// A watch or a followed log: its response may stay quiet for hours.
    var isQuietByDesign: Bool { LongRunningRequest.isQuietByDesign(target: upstreamPath) }

    /// Whether the response is complete (or the exchange was cancelled).
    var isFinished: Bool { finished }

    /// The request body cannot be completed (it stalled, or the parser rejected it): the upstream stream is reset,
    /// and `response` is answered if the response has not started; otherwise the connection is cut. Either way the
    /// connection does not stay open.
    func requestBodyFailed(_ response: LocalResponse) {
        guard !finished else { return }
        stream?.cancel()
        stream = nil
        if responseStarted {
            finished = true
            logAccess()
            connection.abort()
            return
        }
        keepAlive = false
        respondLocally(response)
    }

    /// The client went away: stop the upstream side.
    func cancel() {
        guard !finished else { return }
        finished = true
        serviceIndexLoader?.cancel()
        serviceIndexLoader = nil
        stream?.cancel()
        stream = nil
        logAccess(cancelled: true)
    }

    /// The exchange ended (exactly once): count it, note what the answer says about the credentials, and write the
    /// access-log line.
    private func logAccess(cancelled: Bool = false) {
        let now = DispatchTime.now().uptimeNanoseconds
        let nanos = now - startTime.uptimeNanoseconds
        let timed = !cancelled && kind == .regular && responseStatus != 0
        metrics.requestEnded(method: MethodLabel.index(head.method), status: responseStatus, nanos: nanos, timed: timed)
        if kind == .watch { metrics.values.watches -= 1 }
        if let credentialRevision, responseStarted, upstream === connection.context.current {
            metrics.health.recordAuth(status: responseStatus, revision: credentialRevision, now: now)
        }
        guard shared.accessLog else { return }
        let micros = nanos / 1000
        let status = cancelled ? "cancelled" : String(responseStatus)
        if shared.logFormat == .json {
            shared.logger.info(
                "request",
                metadata: [
                    LogKeys.connectionID: "\(connection.id)", "client": "\(connection.peer)", "method": "\(head.method)",
                    "target": "\(head.target)", "status": cancelled ? "cancelled" : .stringConvertible(responseStatus),
                    "bytes": .stringConvertible(responseBytes), "duration_us": .stringConvertible(micros),
                ])
            return
        }
        shared.logger.info(
            "\(connection.peer) \"\(head.method) \(head.target)\" \(status) \(responseBytes) \(micros)us",
            metadata: [LogKeys.connectionID: "\(connection.id)"])
    }
}

/// A `ProxyTarget` (72 bytes) held out of line: most exchanges have none, and the exchange of a watch lives long.
private final class ProxyTargetBox {
    let value: ProxyTarget
    init(_ value: ProxyTarget) { self.value = value }
}
