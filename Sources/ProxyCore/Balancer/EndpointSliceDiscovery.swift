import Dispatch
import FoundationEssentials

/// `--discover-apiservers`: keeps the server set in step with the `kubernetes` EndpointSlices in `default`, with
/// proxyd's own credentials: a list, then a watch from its resourceVersion, again and again (a watch the server
/// ends is resumed; a `410 Gone` starts over with a list). Runs on the coordinator loop, through its balancer, so
/// its requests go to whichever apiserver is healthy.
///
/// Refusals (403, 404: the user may not read EndpointSlices, or the API is missing) are logged once; proxyd
/// carries on with the servers it has and asks again every `deniedRetry`. A 401 is logged once too, but retried
/// like other failures, with a backoff from 1 s to 30 s: credentials that expired (an exec plugin's) are renewed.
final class EndpointSliceDiscovery: UpstreamResponseHandler {
    static let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    static let selector = "labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes"
    static let maxListBytes = 4 << 20
    static let maxLineBytes = 1 << 20
    static let deniedRetry: Duration = .seconds(300)

    private let balancer: LoopBalancer
    private let servers: APIServerSet
    private var discovered = DiscoveredServers()
    private var resourceVersion: String?

    private enum Phase {
        case idle
        case listing
        case watching
    }

    private var phase = Phase.idle
    private var stream: UpstreamStream?
    private var status = 0
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    private var timer: LoopTimer?
    private var failures = 0
    private var refusalLogged = false
    private var stopped = false
    private var relist = false

    init(balancer: LoopBalancer, servers: APIServerSet) {
        self.balancer = balancer
        self.servers = servers
    }

    func start() {
        list()
    }

    func stop() {
        stopped = true
        timer?.cancel()
        timer = nil
        stream?.cancel()
        stream = nil
    }

    // MARK: requests

    private func list() {
        phase = .listing
        send(query: Self.selector)
    }

    private func watch() {
        phase = .watching
        // Like client-go's reflector: a server-side timeout of 5 to 10 minutes, then a new watch.
        var query = Self.selector + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=\(Int.random(in: 300...600))"
        // resourceVersions are opaque but plain (etcd revisions); anything else would need escaping: list again.
        if let resourceVersion, !resourceVersion.isEmpty,
            resourceVersion.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) })
        {
            query += "&resourceVersion=\(resourceVersion)"
        }
        send(query: query)
    }

    private func send(query: String) {
        guard !stopped else { return }
        var headers = servers.requestHeaders()
        headers.replaceOrAdd(name: "Accept", value: "application/json")
        let target = servers.primary.basePath + Self.path + "?" + query
        status = 0
        body = []
        bodyTooLarge = false
        relist = false
        stream = balancer.start(UpstreamRequest(method: "GET", target: target, headers: headers, hasBody: false), handler: self)
    }

    private func retry(after delay: Duration, listing: Bool) {
        guard !stopped else { return }
        timer?.cancel()
        let box = LoopBound(self)
        timer = balancer.loop.scheduleTimer(after: delay) {
            let discovery = box.value
            discovery.timer = nil
            guard !discovery.stopped else { return }
            if listing || discovery.resourceVersion == nil { discovery.list() } else { discovery.watch() }
        }
    }

    /// 1 s doubling to 30 s, jittered.
    private func backoff() -> Duration {
        failures += 1
        let base = min(1_000 << min(failures - 1, 5), 30_000)
        return .milliseconds(base / 2 + Int.random(in: 0...(base / 2)))
    }

    // MARK: UpstreamResponseHandler

    func upstreamDidReceiveHead(status: Int, headers: HTTPHeaders) {
        self.status = status
    }

    func upstreamDidReceiveBody(_ bytes: [UInt8]) {
        stream?.consumed(bytes.count)
        if status == 200 && phase == .watching {
            body += bytes
            consumeWatchLines()
            return
        }
        let limit = status == 200 ? Self.maxListBytes : 64 * 1024
        if body.count + bytes.count > limit {
            bodyTooLarge = true
        } else {
            body += bytes
        }
    }

    func upstreamDidEnd() {
        stream = nil
        guard !stopped else { return }
        guard status == 200 else {
            refused()
            return
        }
        switch phase {
        case .listing:
            guard !bodyTooLarge, let list = try? JSONDecoder().decode(EndpointSliceList.self, from: Data(body)) else {
                servers.logger.warning("apiserver discovery: the EndpointSlice list could not be read")
                retry(after: backoff(), listing: true)
                return
            }
            failures = 0
            discovered.replaceAll(list.items)
            resourceVersion = list.metadata?.resourceVersion
            publish()
            watch()
        case .watching:
            consumeWatchLines()
            // The server ended the watch (its timeout): resume from the last resourceVersion, or list again.
            if relist {
                list()
            } else {
                failures = 0
                watch()
            }
        case .idle:
            break
        }
    }

    func upstreamDidFail(_ failure: UpstreamFailure) {
        stream = nil
        guard !stopped else { return }
        servers.logger.info("apiserver discovery: \(failure); trying again")
        retry(after: backoff(), listing: phase == .listing || relist)
    }

    func upstreamRequestBodyDrained() {}

    // MARK: results

    private func refused() {
        let message = String(decoding: body.prefix(512), as: UTF8.self)
        switch status {
        case 401, 403, 404:
            if !refusalLogged {
                refusalLogged = true
                let known = servers.snapshot.servers.map(\.url).joined(separator: ", ")
                servers.logger.warning(
                    "apiserver discovery: reading the EndpointSlices of default/kubernetes was refused (\(status)): \(message); carrying on with \(known)")
            }
            retry(after: status == 401 ? backoff() : Self.deniedRetry, listing: true)
        case 410:
            list()
        default:
            servers.logger.info("apiserver discovery: status \(status): \(message); trying again")
            retry(after: backoff(), listing: true)
        }
    }

    /// Applies every complete line of the watch body.
    private func consumeWatchLines() {
        var start = 0
        var changed = false
        while let newline = body[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(body[start..<newline])
            start = newline + 1
            guard !line.isEmpty, let event = EndpointSliceWatchEvent.parse(line) else { continue }
            switch event {
            case .upsert(let slice):
                discovered.upsert(slice)
                resourceVersion = slice.metadata.resourceVersion ?? resourceVersion
                changed = true
            case .deleted(let slice):
                discovered.delete(slice)
                resourceVersion = slice.metadata.resourceVersion ?? resourceVersion
                changed = true
            case .bookmark(let version):
                resourceVersion = version ?? resourceVersion
            case .error(let code, let message):
                servers.logger.info("apiserver discovery: watch error \(code): \(message); listing again")
                relist = true
                resourceVersion = nil
                stream?.cancel()
                stream = nil
                list()
                if changed { publish() }
                return
            }
        }
        body.removeFirst(start)
        if body.count > Self.maxLineBytes {
            servers.logger.warning("apiserver discovery: a watch event is too large; listing again")
            stream?.cancel()
            stream = nil
            relist = true
            list()
        }
        if changed { publish() }
    }

    private func publish() {
        servers.setDiscovered(discovered.addresses)
    }
}
