import Dispatch
import Logging
import Synchronization

/// `--accept-uids`: which local users may use the proxy. The owner of the peer socket is checked once per
/// connection, at accept (see `PeerOwnerLookup`).
public struct AcceptedUIDs: Sendable, Equatable, CustomStringConvertible {
    /// `nil`: anyone (`*`).
    public let uids: Set<UInt32>?

    public init(uids: Set<UInt32>?) {
        self.uids = uids
    }

    /// Anyone who can connect (`*`).
    public static let anyone = AcceptedUIDs(uids: nil)

    /// The default outside a cluster: the user proxyd runs as (effective uid) and root, who can read that user's
    /// kubeconfig anyway.
    public static var ownerAndRoot: AcceptedUIDs { AcceptedUIDs(uids: [PeerOwnerLookup.effectiveUID, 0]) }

    /// `"*"` or comma-separated decimal uids (spaces allowed around them).
    /// - Returns: `nil` for anything else (an empty list, names, negative numbers).
    public static func parse(_ text: String) -> AcceptedUIDs? {
        let trimmed = text.trimmingSpaces()
        if trimmed == "*" { return .anyone }
        var uids: Set<UInt32> = []
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let item = part.trimmingSpaces()
            guard !item.isEmpty, item.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                let uid = UInt32(item)
            else { return nil }
            uids.insert(uid)
        }
        return uids.isEmpty ? nil : AcceptedUIDs(uids: uids)
    }

    public func accepts(_ uid: UInt32) -> Bool { uids?.contains(uid) ?? true }

    public var acceptsAnyone: Bool { uids == nil }

    /// Whether users other than proxyd's own and root are accepted: then a unix socket file must let them connect.
    public var acceptsOtherUsers: Bool {
        guard let uids else { return true }
        return !uids.isSubset(of: [PeerOwnerLookup.effectiveUID, 0])
    }

    /// `*` or the sorted list, as the flag takes it.
    public var description: String {
        guard let uids else { return "*" }
        return uids.sorted().map(String.init).joined(separator: ",")
    }
}

/// How long a client connection may sit without progress. Defaults as documented in docs/configuration.md.
public struct ClientTimeouts: Sendable, Equatable {
    /// From accept (or from the first byte of a later request on a keep-alive connection) to the end of a request
    /// head; then 408. nginx's `client_header_timeout` is 60 s, Go's servers have none: 30 s leaves a slow link
    /// plenty of time to send a few KiB.
    public var header: Duration = .seconds(30)
    /// A keep-alive connection with no request in progress is closed after this (silently, as RFC 9112 §9.8
    /// allows). Longer than client-go's 90 s idle timeout for its own pool, so clients normally close first.
    public var idle: Duration = .seconds(120)
    /// No byte of a request body for this long while proxyd is reading it (not while it holds the client back
    /// for flow control): 408, the upstream stream is reset and the connection closed. nginx's
    /// `client_body_timeout` default.
    public var body: Duration = .seconds(60)

    public init() {}
}

/// Counts client connections across all loops (`--max-connections`). Lock-free.
final class ConnectionLimit: Sendable {
    let maximum: Int
    private let open = Atomic<Int>(0)

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    /// Takes a slot; `false` (and nothing taken) at the cap.
    func tryAcquire() -> Bool {
        var current = open.load(ordering: .relaxed)
        while current < maximum {
            let (exchanged, original) = open.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() {
        open.subtract(1, ordering: .relaxed)
    }

    var count: Int { open.load(ordering: .relaxed) }
}

/// Who may connect and for how long: `--accept-uids`, `--max-connections`, the client timeouts and `--read-only`.
/// Immutable, shared by all loops.
final class ConnectionPolicy: Sendable {
    let acceptUIDs: AcceptedUIDs
    let limit: ConnectionLimit
    let timeouts: ClientTimeouts
    let readOnly: Bool

    init(acceptUIDs: AcceptedUIDs, maxConnections: Int, timeouts: ClientTimeouts, readOnly: Bool) {
        self.acceptUIDs = acceptUIDs
        self.limit = ConnectionLimit(maximum: maxConnections)
        self.timeouts = timeouts
        self.readOnly = readOnly
    }

    /// The refusal for a connection whose peer is `owner`, or `nil` to serve it.
    /// - Parameter loopbackPeer: whether the peer address is a loopback one (its socket must then be found).
    func refusal(for owner: PeerOwner, loopbackPeer: Bool) -> (response: LocalResponse, log: String)? {
        switch owner {
        case .uid(let uid) where acceptUIDs.accepts(uid):
            return nil
        case .uid(let uid):
            let message = "proxyd: connection refused: the client runs as uid \(uid), and this proxy only accepts "
                + "uids \(acceptUIDs) (--accept-uids)"
            return (.status(403, reason: "Forbidden", message: message), "refused a connection from uid \(uid) (--accept-uids=\(acceptUIDs))")
        case .notLocal where !loopbackPeer:
            return nil  // a remote peer on a non-loopback listener: start-up warned that anyone may connect
        case .notLocal:
            let message = "proxyd: connection refused: the owner of the client's socket cannot be found "
                + "(--accept-uids=\(acceptUIDs))"
            return (.status(403, reason: "Forbidden", message: message), "refused a loopback connection whose socket owner cannot be found")
        case .unknown(let why):
            let message = "proxyd: connection refused: the client's user cannot be determined (\(why)); "
                + "--accept-uids='*' accepts every local user"
            return (.status(403, reason: "Forbidden", message: message), "refused a connection: \(why)")
        }
    }

    /// The answer to requests under `--read-only`, or `nil` when the request may pass.
    func readOnlyRefusal(method: String, isUpgrade: Bool) -> LocalResponse? {
        guard readOnly else { return nil }
        if isUpgrade {
            return .status(
                403, reason: "Forbidden",
                message: "proxyd is read-only (--read-only): protocol upgrades (exec, attach, port-forward, WebSocket) are not allowed")
        }
        switch method {
        case "GET", "HEAD", "OPTIONS": return nil
        default:
            var response = LocalResponse.status(
                405, reason: "MethodNotAllowed",
                message: "proxyd is read-only (--read-only): \(method) is not allowed, only GET, HEAD and OPTIONS")
            response.headers.add(name: "Allow", value: "GET, HEAD, OPTIONS")
            return response
        }
    }

    /// The default `--max-connections` for a soft `RLIMIT_NOFILE` of `fileLimit`: each client connection may need
    /// two descriptors (its own and, for upgrades and HTTP/1.1 upstreams, a dedicated upstream connection), and
    /// `reserved` stay free for listeners, pooled HTTP/2 connections, exec plugins and files. At the cap proxyd
    /// therefore never runs out of descriptors because of clients.
    static func defaultMaxConnections(fileLimit: UInt64, reserved: UInt64 = 64) -> Int {
        guard fileLimit > reserved * 2 else { return Int(max(1, fileLimit / 4)) }
        return Int(min((fileLimit - reserved) / 2, UInt64(Int32.max)))
    }
}

extension SocketAddress {
    /// 127.0.0.0/8, `::1`, and IPv4-mapped loopback (already `.v4` here).
    public var isLoopback: Bool {
        switch self {
        case .v4(let host, _): return host.hasPrefix("127.")
        case .v6(let host, _): return host == "::1"
        case .unix: return false
        }
    }

    /// Reachable only from this machine: loopback or a unix socket.
    public var isLocalOnly: Bool {
        if case .unix = self { return true }
        return isLoopback
    }
}

public enum ListenerExposure {
    /// The start-up warning for listeners that other machines can reach, `nil` when all are loopback or unix.
    public static func warning(for addresses: [SocketAddress]) -> String? {
        let exposed = addresses.filter { !$0.isLocalOnly }
        guard !exposed.isEmpty else { return nil }
        let list = exposed.map(\.description).joined(separator: ", ")
        return "proxyd is listening on \(list), which is not a loopback address: anyone who can reach it acts as "
            + "you in the cluster (--accept-uids only checks connections from this machine)"
    }
}

/// A connection over `--max-connections`: gets a 503 `Status` at once, without its request being read, then is
/// closed after the client's EOF or a short linger (closing with unread input would reset the connection and could
/// destroy the 503 before the client reads it). Retains itself until closed. Confined to its loop.
final class RefusedConnection: StreamConnectionDelegate {
    static let linger: Duration = .seconds(1)
    /// Lingering refusals per loop; beyond this a refusal closes right after writing.
    static let maxLingering = 256

    private let socket: StreamConnection
    private var keepSelf: RefusedConnection?
    private var timer: LoopTimer?
    private let onClose: () -> Void

    /// - Parameters:
    ///   - fd: the accepted socket; ownership passes to the refusal.
    ///   - onClose: called on the loop once the socket is closed.
    init(fd: Int32, loop: EventLoop, response: LocalResponse, onClose: @escaping () -> Void) {
        socket = StreamConnection(fd: fd, loop: loop)
        self.onClose = onClose
        socket.delegate = self
        keepSelf = self
        socket.write(response.wireBytes(headOnly: false, keepAlive: false, version: .http1_1))
        socket.shutdownWrite()
    }

    func start(linger: Bool) {
        socket.start()
        guard linger else {
            socket.close()
            return
        }
        let box = WeakLoopBound(self)
        timer = socket.loop.scheduleTimer(after: Self.linger) { box.value?.socket.close() }
    }

    func connection(_ c: StreamConnection, didRead bytes: ArraySlice<UInt8>) {}

    func connectionDidReadEOF(_ c: StreamConnection) {
        if c.bufferedWriteBytes == 0 { c.close() }
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {}

    func connection(_ c: StreamConnection, didFail error: IOError) {}

    func connectionDidClose(_ c: StreamConnection) {
        timer?.cancel()
        timer = nil
        keepSelf = nil
        onClose()
    }

}

extension LocalResponse {
    /// The complete response as written to an HTTP/1.1 client: `Content-Length` (except 204/304), `Date`, and
    /// `Connection: close` when the connection ends after it (`keep-alive` for a persistent HTTP/1.0 one).
    func wireBytes(headOnly: Bool, keepAlive: Bool, version: HTTPVersion) -> [UInt8] {
        var headers = self.headers
        if status != 304 && status != 204 {  // they have no body, and no length
            headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        }
        headers.replaceOrAdd(name: "Date", value: HTTPDate.now())
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if version == .http1_0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        var out = HTTP1Serializer.responseHead(
            HTTPResponseHead(status: status, reason: "", version: .http1_1, headers: headers))
        if !headOnly { out += body }
        return out
    }
}

extension ConnectionPolicy {
    convenience init(configuration: ProxyConfiguration) {
        self.init(
            acceptUIDs: configuration.acceptUIDs, maxConnections: configuration.effectiveMaxConnections,
            timeouts: configuration.clientTimeouts, readOnly: configuration.readOnly)
    }
}

extension ProxyConfiguration {
    /// `--max-connections`, or its default for the current open-file limit.
    public var effectiveMaxConnections: Int {
        maxConnections ?? ConnectionPolicy.defaultMaxConnections(fileLimit: OpenFileLimit.current().soft)
    }
}

extension LoopContext {
    struct Admission {
        /// Serve no request on this connection: answer its first request with this and close.
        var refusal: LocalResponse?
    }

    /// Decides at accept whether a connection is served: over `--max-connections` it gets a 503 at once (and `nil`
    /// is returned: the fd is taken care of); a peer outside `--accept-uids` is admitted only to be refused (its
    /// first request gets a 403, nothing is forwarded). Holds a `--max-connections` slot when it returns non-nil;
    /// `unregister` gives it back.
    func admit(fd: Int32, peer: SocketAddress) -> Admission? {
        let policy = shared.policy
        guard policy.limit.tryAcquire() else {
            refuseOverCapacity(fd: fd, maximum: policy.limit.maximum)
            return nil
        }
        guard !policy.acceptUIDs.acceptsAnyone else { return Admission(refusal: nil) }
        let owner = peerOwners.owner(ofPeerOf: fd, peer: peer)
        guard let (response, log) = policy.refusal(for: owner, loopbackPeer: peer.isLocalOnly) else {
            return Admission(refusal: nil)
        }
        shared.logger.warning("\(log)", metadata: ["peer": "\(peer)"])
        return Admission(refusal: response)
    }

    private func refuseOverCapacity(fd: Int32, maximum: Int) {
        overCapacityRefusals += 1
        let now = DispatchTime.now().uptimeNanoseconds
        if overCapacityLoggedAt == 0 || now - overCapacityLoggedAt >= 10_000_000_000 {
            shared.logger.warning(
                "refused \(overCapacityRefusals) new connection(s): \(maximum) are open (--max-connections)")
            overCapacityLoggedAt = now
            overCapacityRefusals = 0
        }
        let response = LocalResponse.status(
            503, reason: "ServiceUnavailable",
            message: "proxyd: too many connections: \(maximum) are open (--max-connections)")
        let linger = lingeringRefusals < RefusedConnection.maxLingering
        lingeringRefusals += 1
        let refused = RefusedConnection(fd: fd, loop: loop, response: response) { [unowned self] in
            self.lingeringRefusals -= 1
        }
        refused.start(linger: linger)
    }
}

extension ConnectionPolicy {
    /// Out of file descriptors at accept: pending connections get a 503 and are closed at once; one log line when
    /// it starts and one when it ends.
    func watchDescriptorExhaustion(of listener: Listener, logger: Logger) {
        let response = LocalResponse.status(
            503, reason: "ServiceUnavailable",
            message: "proxyd: out of file descriptors; try again later")
        let address = listener.localAddress
        listener.onDescriptorExhaustion(
            response: response.wireBytes(headOnly: false, keepAlive: false, version: .http1_1)
        ) { event in
            switch event {
            case .began(let error):
                let limit = OpenFileLimit.current()
                logger.error(
                    "out of file descriptors on \(address) (accept: \(error.message), open-file limit \(limit.soft)): refusing new connections with 503 until descriptors are free; --max-connections keeps clients below the limit")
            case .ended(let refused):
                logger.warning("accepting connections on \(address) again; refused \(refused) while out of file descriptors")
            }
        }
    }
}
