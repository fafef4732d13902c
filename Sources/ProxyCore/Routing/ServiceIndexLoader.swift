import FoundationEssentials

/// Gathers what the service index shows, through the loop's upstream pools with the proxy's own credentials (the
/// page shows what the person running proxyd may see). Confined to its loop.
///
/// One cluster-wide `GET /api/v1/services` when it is allowed; when it is refused, the namespaces are listed and
/// then each namespace's services (at most `parallelism` at a time), so a user who may list only some namespaces
/// sees those, and the apiserver's reason for each namespace it refused. When even namespaces cannot be listed,
/// the kubeconfig context's namespace (else `default`) is tried.
final class ServiceIndexLoader {
    static let bodyLimit = 32 << 20
    static let namespaceLimit = 500
    static let parallelism = 8

    /// The configuration version the request that asked for the page started with, and the loop's servers for it.
    private let upstream: LoopUpstream
    private let loop: EventLoop
    private let clientIP: String?
    private var completion: ((ServiceIndex) -> Void)?
    private var inFlight: [ObjectIdentifier: UpstreamFetch] = [:]
    private var queue: [String] = []
    private var index = ServiceIndex()
    private var listings: [String: ServiceIndex.Listing] = [:]
    private var order: [String] = []
    private var cancelled = false

    init(upstream: LoopUpstream, loop: EventLoop, clientIP: String?, completion: @escaping (ServiceIndex) -> Void) {
        self.upstream = upstream
        self.loop = loop
        self.clientIP = clientIP
        self.completion = completion
    }

    private var version: ConfigurationVersion { upstream.version }

    func start() {
        let credentials = version.credentials.current
        if let generation = credentials.pluginGeneration, credentials.isExpired(now: Date()) {
            let box = LoopBound(self)
            let loop = self.loop
            version.credentials.refresh(ifStillGeneration: generation) {
                loop.execute { box.value.listAllServices() }
            }
            return
        }
        listAllServices()
    }

    func cancel() {
        cancelled = true
        completion = nil
        for fetch in inFlight.values { fetch.cancel() }
        inFlight = [:]
    }

    private func listAllServices() {
        guard !cancelled else { return }
        get("/api/v1/services") { [weak self] result in
            guard let self else { return }
            switch result {
            case .success((200, let body)):
                guard let grouped = ServiceIndex.servicesByNamespace(fromList: body) else {
                    self.index.notices.append("The apiserver's service list could not be read.")
                    return self.finish()
                }
                for name in grouped.keys.sorted() {
                    self.index.namespaces.append(.init(name: name, listing: .services(grouped[name] ?? [])))
                }
                self.finish()
            case .success((let status, _)) where status == 403 || status == 401:
                self.listNamespaces()
            case .success((let status, let body)):
                self.index.notices.append("Services could not be listed: " + ServiceIndex.reason(status: status, body: body))
                self.finish()
            case .failure(let failure):
                self.index.notices.append("The apiserver could not be reached: \(failure)")
                self.finish()
            }
        }
    }

    private func listNamespaces() {
        get("/api/v1/namespaces") { [weak self] result in
            guard let self else { return }
            var names: [String] = []
            switch result {
            case .success((200, let body)):
                names = ServiceIndex.namespaceNames(fromList: body) ?? []
                if names.count > Self.namespaceLimit {
                    self.index.notices.append(
                        "Only the first \(Self.namespaceLimit) of \(names.count) namespaces are shown: this user may not list services cluster-wide.")
                    names = Array(names.prefix(Self.namespaceLimit))
                }
            case .success((let status, let body)):
                let fallback = self.version.target.namespace ?? "default"
                self.index.notices.append(
                    "Namespaces could not be listed (\(ServiceIndex.reason(status: status, body: body))); showing the context's namespace \"\(fallback)\".")
                names = [fallback]
            case .failure(let failure):
                self.index.notices.append("The apiserver could not be reached: \(failure)")
            }
            self.order = names
            self.queue = names
            self.pump()
        }
    }

    private func pump() {
        guard !cancelled else { return }
        while inFlight.count < Self.parallelism, !queue.isEmpty {
            let namespace = queue.removeFirst()
            get("/api/v1/namespaces/\(PercentEncoding.encodePath(namespace))/services") { [weak self] result in
                guard let self else { return }
                switch result {
                case .success((200, let body)):
                    let services = ServiceIndex.servicesByNamespace(fromList: body)?.values.flatMap { $0 } ?? []
                    self.listings[namespace] = .services(services.sorted { $0.name < $1.name })
                case .success((let status, let body)):
                    self.listings[namespace] = .unavailable(
                        "Services in this namespace could not be listed: " + ServiceIndex.reason(status: status, body: body))
                case .failure(let failure):
                    self.listings[namespace] = .unavailable("The apiserver could not be reached: \(failure)")
                }
                self.pump()
            }
        }
        if inFlight.isEmpty && queue.isEmpty {
            index.namespaces = order.map { .init(name: $0, listing: listings[$0] ?? .services([])) }
            finish()
        }
    }

    private func finish() {
        guard !cancelled, let completion else { return }
        self.completion = nil
        completion(index)
    }

    private func get(_ path: String, then handle: @escaping (Result<(Int, [UInt8]), UpstreamFailure>) -> Void) {
        let headers = HeaderRewriter.upstreamRequestHeaders(
            HTTPHeaders([("Accept", "application/json")]), clientIP: clientIP,
            credentials: version.credentials.current, isUpgrade: false)
        let request = UpstreamRequest(
            method: "GET", target: version.router.serverBasePath + path, headers: headers, hasBody: false)
        let fetch = UpstreamFetch(limit: Self.bodyLimit)
        let key = ObjectIdentifier(fetch)
        fetch.completion = { [weak self] result in
            self?.inFlight[key] = nil
            handle(result)
        }
        inFlight[key] = fetch
        fetch.stream = upstream.servers.start(request, handler: fetch)
    }
}

/// One upstream GET whose whole body is wanted (up to `limit` bytes).
final class UpstreamFetch: UpstreamResponseHandler {
    let limit: Int
    var stream: UpstreamStream?
    var completion: ((Result<(Int, [UInt8]), UpstreamFailure>) -> Void)?
    private var status = 0
    private var body: [UInt8] = []

    init(limit: Int) {
        self.limit = limit
    }

    func cancel() {
        completion = nil
        stream?.cancel()
        stream = nil
    }

    func upstreamDidReceiveHead(status: Int, headers: HTTPHeaders) {
        self.status = status
    }

    func upstreamDidReceiveBody(_ bytes: ByteBuffer) {
        stream?.consumed(bytes.readableBytes)
        if body.count + bytes.readableBytes > limit {
            stream?.cancel()
            finish(.failure(.badGateway("the response is larger than \(limit) bytes")))
            return
        }
        body += bytes.readableBytesArray
    }

    func upstreamDidEnd() {
        finish(.success((status, body)))
    }

    func upstreamDidFail(_ failure: UpstreamFailure) {
        finish(.failure(failure))
    }

    func upstreamRequestBodyDrained() {}

    private func finish(_ result: Result<(Int, [UInt8]), UpstreamFailure>) {
        let callback = completion
        completion = nil
        stream = nil
        callback?(result)
    }
}
