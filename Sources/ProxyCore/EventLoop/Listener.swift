import Dispatch
import Glibc

/// What a listener reports while `accept` fails for lack of file descriptors.
public enum AcceptExhaustion: Sendable, Equatable {
    /// The first failure of a burst (`EMFILE` or `ENFILE`).
    case began(IOError)
    /// Accepting works again; `refused` connections were refused during the burst.
    case ended(refused: Int)
}

/// A listening socket: TCP (IPv4/IPv6), unix, or an fd inherited from systemd socket activation.
///
/// Accepts on its own serial queue and hands each accepted fd (non-blocking, close-on-exec) to the callback
/// together with the loop chosen for it (`group.next()`). All mutable state is confined to that accept queue, which
/// is why the class is `@unchecked Sendable`; `start` and `close` may be called from any thread.
///
/// The listener owns its fd and closes it in the accept source's cancel handler (or directly if never started).
public final class Listener: @unchecked Sendable {
    /// The bound address; for TCP with the real port after binding port 0.
    public let localAddress: SocketAddress
    private let fd: Int32
    private let unixPath: String?            // set only if we created the socket file (we unlink it on close)
    private let unixIdentity: (device: UInt, inode: UInt)?
    private let acceptQueue: DispatchQueue

    private enum State { case idle, started, closing, closed }
    // Confined to acceptQueue:
    private var state = State.idle
    private var source: (any DispatchSourceRead)?
    private var sourceSuspended = false
    private var closeCompletions: [@Sendable () -> Void] = []
    /// Accepts that failed for lack of descriptors (`EMFILE`/`ENFILE`) with no spare descriptor to refuse them
    /// with; accepting paused briefly each time.
    private(set) var resourceExhaustionPauses = 0
    /// A descriptor held in reserve (`/dev/null`): when `accept` fails with `EMFILE`/`ENFILE` it is closed for a
    /// moment so that the pending connection can be accepted, answered and closed (libev's and nginx's trick),
    /// instead of waiting in the backlog until the client times out. -1 when unavailable.
    private var reserveFD: Int32 = -1
    /// While out of descriptors: the burst was reported, and how many connections were refused in it.
    private var exhausted = false
    private var refusedWhileExhausted = 0
    private var exhaustionResponse: [UInt8] = []
    private var exhaustionReport: (@Sendable (AcceptExhaustion) -> Void)?

    /// Pause after `EMFILE`/`ENFILE`, so a level-triggered accept source does not spin.
    static let exhaustionBackoff = DispatchTimeInterval.milliseconds(100)
    /// Upper bound of accepts per readable event.
    static let maxAcceptsPerEvent = 1024

    private init(fd: Int32, localAddress: SocketAddress, unixPath: String?, unixIdentity: (device: UInt, inode: UInt)?) {
        self.fd = fd
        self.localAddress = localAddress
        self.unixPath = unixPath
        self.unixIdentity = unixIdentity
        self.acceptQueue = DispatchQueue(label: "proxyd.accept.\(localAddress)")
        reserveFD = Listener.openReserve()
    }

    deinit {
        if state == .idle { try? Posix.close(fd: fd); unlinkOwnSocketFile() }
        if reserveFD >= 0 { try? Posix.close(fd: reserveFD) }
    }

    private static func openReserve() -> Int32 {
        Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    /// Whether descriptors are free beyond the one an accept just took: the reserve is in place (reopened if it
    /// was lost) and one more can be opened. While descriptors are exhausted, an accept succeeds each time a
    /// connection closes somewhere; only this ends the exhaustion, so a process at the limit does not report (and
    /// log) a new start and end of it for every descriptor that comes free.
    private static func hasSpareDescriptor(reserve: inout Int32) -> Bool {
        if reserve < 0 { reserve = openReserve() }
        guard reserve >= 0 else { return false }
        let probe = openReserve()
        guard probe >= 0 else { return false }
        try? Posix.close(fd: probe)
        return true
    }

    // MARK: binding

    /// Binds and listens on TCP.
    /// - Parameters:
    ///   - host: `"127.0.0.1"`, `"::1"`, `"[::1]"`, `"0.0.0.0"`, `"::"` (dual stack: `IPV6_V6ONLY=0`), `"localhost"`
    ///   or any other name; resolved with `getaddrinfo`, the first address is used.
    ///   - port: 0 picks a free port (see `localAddress`).
    ///   - backlog: `listen(2)` backlog.
    /// - Throws: `IOError`, e.g. `function == "bind"`, `errno == EADDRINUSE`. Format it with
    ///   `Listener.describeError(_:tcpHost:port:)` for a Go-like message.
    public static func bindTCP(host: String, port: UInt16, backlog: Int32 = 511) throws(IOError) -> Listener {
        let addresses = try Resolver.resolve(host: host, port: port, passive: true)
        let address = addresses[0]
        let fd = try Posix.socket(domain: address.family, type: Posix.socketStream | Posix.nonBlockingCloexec)
        do {
            try Posix.setsockopt(fd: fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
            if address.family == AF_INET6 {
                let dualStack = Resolver.bare(host) == "::"
                try Posix.setsockopt(fd: fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: dualStack ? 0 : 1)
            }
            try address.withSockAddr { (pointer, length) throws(IOError) in
                try Posix.bind(fd: fd, address: pointer, length: length)
            }
            try Posix.listen(fd: fd, backlog: backlog)
            let local = try SockAddr.filled { (pointer, length) throws(IOError) in
                try Posix.getsockname(fd: fd, address: pointer, length: length)
            }
            return Listener(fd: fd, localAddress: local.socketAddress, unixPath: nil, unixIdentity: nil)
        } catch {
            try? Posix.close(fd: fd)
            throw error
        }
    }

    /// Binds and listens on a unix socket with `mode` (0700: only the owner, and root, may connect). A stale socket
    /// file at `path` (nobody accepting) is removed first; a live socket or any other kind of file is left alone
    /// and binding fails with `EADDRINUSE`. `close()` unlinks the socket file (if it is still ours).
    /// - Throws: `IOError` (`"bind"`, `"chmod"`, `"listen"`…).
    public static func bindUnix(path: String, mode: UInt32 = 0o700, backlog: Int32 = 511) throws(IOError) -> Listener {
        let address = try SockAddr(unixPath: path)
        var status = stat()
        if lstat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFSOCK {
            if try isAcceptingUnixSocket(address) { throw IOError(errno: EADDRINUSE, function: "bind") }
            if unlink(path) != 0 && Glibc.errno != ENOENT { throw IOError(errno: Glibc.errno, function: "unlink") }
        }
        let fd = try Posix.socket(domain: AF_UNIX, type: Posix.socketStream | Posix.nonBlockingCloexec)
        var created = false
        do throws(IOError) {
            try address.withSockAddr { (pointer, length) throws(IOError) in
                try Posix.bind(fd: fd, address: pointer, length: length)
            }
            created = true
            // Before listen(): nobody can connect while the file still has umask permissions.
            if chmod(path, mode_t(mode)) != 0 { throw IOError(errno: Glibc.errno, function: "chmod") }
            if lstat(path, &status) != 0 { throw IOError(errno: Glibc.errno, function: "stat") }
            try Posix.listen(fd: fd, backlog: backlog)
            return Listener(fd: fd, localAddress: .unix(path: path), unixPath: path,
                            unixIdentity: (UInt(status.st_dev), UInt(status.st_ino)))
        } catch {
            if created { unlink(path) }
            try? Posix.close(fd: fd)
            throw error
        }
    }

    /// Adopts an fd that is already bound and listening (systemd socket activation, `LISTEN_FDS`).
    /// Sets `O_NONBLOCK` and `FD_CLOEXEC`. Takes ownership of `fd`; `close()` never unlinks a unix path it did not
    /// create. - Throws: `IOError(EINVAL, "listen")` if `fd` is not a listening stream socket.
    public convenience init(inheritedFD fd: Int32) throws(IOError) {
        let accepting = try Posix.getsockopt(fd: fd, level: SOL_SOCKET, name: SO_ACCEPTCONN)
        guard accepting != 0 else { throw IOError(errno: EINVAL, function: "listen") }
        try Posix.setNonBlockingAndCloexec(fd: fd)
        let local = try SockAddr.filled { (pointer, length) throws(IOError) in
            try Posix.getsockname(fd: fd, address: pointer, length: length)
        }
        self.init(fd: fd, localAddress: local.socketAddress, unixPath: nil, unixIdentity: nil)
    }

    private static func isAcceptingUnixSocket(_ address: SockAddr) throws(IOError) -> Bool {
        let probe = try Posix.socket(domain: AF_UNIX, type: Posix.socketStream | Posix.nonBlockingCloexec)
        defer { try? Posix.close(fd: probe) }
        do {
            _ = try address.withSockAddr { (pointer, length) throws(IOError) in
                try Posix.connect(fd: probe, address: pointer, length: length)
            }
            return true
        } catch where error.errno == ECONNREFUSED || error.errno == ENOENT {
            return false
        } catch {
            return true        // EAGAIN (backlog full), EACCES…: not provably stale, leave it alone
        }
    }

    // MARK: accepting

    /// While `accept` fails with `EMFILE`/`ENFILE`, pending connections get `response` (a complete HTTP response)
    /// and are closed at once, and `report` is called once when such a burst begins and once when it ends (on the
    /// accept queue). Call before `start`.
    public func onDescriptorExhaustion(
        response: [UInt8], report: @escaping @Sendable (AcceptExhaustion) -> Void
    ) {
        acceptQueue.async {
            self.exhaustionResponse = response
            self.exhaustionReport = report
        }
    }

    /// Starts accepting on the listener's own queue.
    /// - Parameter onAccept: called on the accept queue with a non-blocking, close-on-exec fd (ownership passes to
    ///   the callee), the peer address and the loop it should live on. Typically creates a `StreamConnection`.
    public func start(group: EventLoopGroup, onAccept: @escaping @Sendable (_ fd: Int32, _ peer: SocketAddress, _ loop: EventLoop) -> Void) {
        acceptQueue.async {
            guard self.state == .idle else { return }
            self.state = .started
            let source = DispatchSource.makeReadSource(fileDescriptor: self.fd, queue: self.acceptQueue)
            source.setEventHandler { self.acceptable(group: group, onAccept: onAccept) }
            source.setCancelHandler { self.finishClose() }
            self.source = source
            source.activate()
        }
    }

    private func acceptable(group: EventLoopGroup, onAccept: @Sendable (Int32, SocketAddress, EventLoop) -> Void) {
        guard state == .started, !sourceSuspended else { return }
        for _ in 0..<Listener.maxAcceptsPerEvent {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let outcome = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    Result { () throws(IOError) in
                        try Posix.accept4(fd: fd, address: address, length: &length, flags: Posix.nonBlockingCloexec)
                    }
                }
            }
            switch outcome {
            case .success(.processed(let newFD)):
                if exhausted && Listener.hasSpareDescriptor(reserve: &reserveFD) {
                    exhausted = false
                    exhaustionReport?(.ended(refused: refusedWhileExhausted))
                    refusedWhileExhausted = 0
                }
                var peer = SockAddr()
                peer.storage = storage
                peer.length = length
                if peer.family == AF_INET || peer.family == AF_INET6 {
                    // Responses are written as head + body pieces: never let Nagle hold one back for an ACK.
                    try? Posix.setsockopt(fd: newFD, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
                }
                onAccept(newFD, peer.socketAddress, group.next())
                guard state == .started else { return }     // closed from the callback
            case .success(.wouldBlock):
                return
            case .failure(let error) where error.errno == EMFILE || error.errno == ENFILE:
                if !exhausted {
                    exhausted = true
                    exhaustionReport?(.began(error))
                }
                switch refusePendingConnection() {
                case .refused:
                    continue
                case .backlogEmpty:
                    return
                case .impossible:
                    // No spare descriptor: the connection stays in the backlog and the source stays readable.
                    // Pause instead of spinning, retry shortly.
                    resourceExhaustionPauses += 1
                    pauseAccepting()
                    return
                }
            case .failure(let error) where error.errno == ENOBUFS || error.errno == ENOMEM:
                resourceExhaustionPauses += 1
                pauseAccepting()
                return
            case .failure:
                continue            // ECONNABORTED, EPROTO, EPERM (firewall)…: that connection is gone, go on
            }
        }
    }

    private enum Refusal { case refused, backlogEmpty, impossible }

    /// Out of descriptors: frees the reserve for a moment, accepts one pending connection, answers it and closes it.
    private func refusePendingConnection() -> Refusal {
        guard reserveFD >= 0 else {
            reserveFD = Listener.openReserve()
            return .impossible
        }
        try? Posix.close(fd: reserveFD)
        reserveFD = -1
        defer { reserveFD = Listener.openReserve() }
        let outcome = Result { () throws(IOError) in
            try Posix.accept4(fd: fd, address: nil, length: nil, flags: Posix.nonBlockingCloexec)
        }
        switch outcome {
        case .success(.processed(let newFD)):
            // Read what already arrived, so that closing sends FIN rather than a reset that could destroy the
            // answer; then answer (best effort, the socket buffer is empty) and close.
            var scratch = [UInt8](repeating: 0, count: 16 * 1024)
            for _ in 0..<4 {
                let n = scratch.withUnsafeMutableBytes { Glibc.recv(newFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { break }
            }
            if !exhaustionResponse.isEmpty {
                _ = exhaustionResponse.withUnsafeBytes {
                    Glibc.send(newFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
                }
            }
            try? Posix.shutdown(fd: newFD, how: Int32(SHUT_WR))
            try? Posix.close(fd: newFD)
            refusedWhileExhausted += 1
            return .refused
        case .success(.wouldBlock):
            return .backlogEmpty
        case .failure(let error) where error.errno == EMFILE || error.errno == ENFILE:
            return .impossible      // the freed descriptor was taken by another thread meanwhile
        case .failure:
            return .refused         // ECONNABORTED…: that connection is gone, go on
        }
    }

    private func pauseAccepting() {
        guard let source, !sourceSuspended else { return }
        source.suspend()
        sourceSuspended = true
        acceptQueue.asyncAfter(deadline: .now() + Listener.exhaustionBackoff) {
            guard self.state == .started, self.sourceSuspended, let source = self.source else { return }
            self.sourceSuspended = false
            source.resume()
        }
    }

    // MARK: closing

    /// Stops accepting and closes the fd (in the source's cancel handler); unlinks a unix socket file we created.
    /// Idempotent; may be called from any thread.
    public func close() {
        close(completion: nil)
    }

    /// `close()`, with `completion` called on the accept queue once the fd is closed and the file unlinked.
    public func close(completion: (@Sendable () -> Void)?) {
        acceptQueue.async {
            if let completion { self.closeCompletions.append(completion) }
            switch self.state {
            case .idle:
                self.state = .closing
                self.finishClose()
            case .started:
                self.state = .closing
                if let source = self.source {
                    if self.sourceSuspended { source.resume(); self.sourceSuspended = false }
                    source.cancel()
                }
            case .closing:
                break
            case .closed:
                self.runCloseCompletions()
            }
        }
    }

    private func finishClose() {
        try? Posix.close(fd: fd)
        if reserveFD >= 0 { try? Posix.close(fd: reserveFD) }
        reserveFD = -1
        unlinkOwnSocketFile()
        source = nil
        state = .closed
        runCloseCompletions()
    }

    private func runCloseCompletions() {
        let completions = closeCompletions
        closeCompletions = []
        for completion in completions { completion() }
    }

    private func unlinkOwnSocketFile() {
        guard let unixPath, let unixIdentity else { return }
        var status = stat()
        guard lstat(unixPath, &status) == 0, (status.st_mode & S_IFMT) == S_IFSOCK,
              UInt(status.st_dev) == unixIdentity.device, UInt(status.st_ino) == unixIdentity.inode else { return }
        unlink(unixPath)
    }

    // MARK: messages

    /// Go-like text for a failed `bindTCP`: `"listen tcp 127.0.0.1:8001: bind: address already in use"`,
    /// `"listen tcp [::1]:8001: …"`, or `"listen tcp: lookup nosuch: no such host"`.
    public static func describeError(_ error: any Error, tcpHost host: String, port: UInt16) -> String {
        if let ioError = error as? IOError, ioError.function.hasPrefix("lookup ") {
            return "listen tcp: \(ioError)"
        }
        let bare = Resolver.bare(host)
        let hostPort = bare.contains(":") ? "[\(bare)]:\(port)" : "\(bare):\(port)"
        return "listen tcp \(hostPort): \(error)"
    }

    /// Go-like text for a failed `bindUnix`: `"listen unix /run/proxyd.sock: bind: address already in use"`.
    public static func describeError(_ error: any Error, unixPath path: String) -> String {
        "listen unix \(path): \(error)"
    }
}
