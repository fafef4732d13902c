import Dispatch
import Glibc

/// Non-blocking outgoing TCP connect.
public enum TCPConnector {
    /// Resolves `host` (blocking `getaddrinfo` on a global queue, hopped back to `loop`), then tries each address
    /// in turn with a non-blocking connect until one succeeds.
    /// - Parameters:
    ///   - host: DNS name or IP literal (`[::1]` accepted).
    ///   - timeout: for the whole operation (resolution and all attempts).
    ///   - completion: called exactly once, on `loop`: a connected, non-blocking, close-on-exec fd with
    ///     `TCP_NODELAY` set (ownership passes to the callee; no Dispatch source watches it any more), or the
    ///     error of the last attempt (`connect: connection refused`), of the lookup, or `connect: i/o timeout`
    ///     (`errno == ETIMEDOUT`).
    public static func connect(host: String, port: UInt16, loop: EventLoop, timeout: Duration,
                               completion: @escaping @Sendable (Result<Int32, IOError>) -> Void) {
        let attempt = ConnectAttempt(loop: loop, completion: completion)
        loop.execute { attempt.startTimer(timeout) }
        if Resolver.isIPLiteral(host) {
            // No lookup needed: getaddrinfo with a numeric host does not block.
            let resolved = Result { () throws(IOError) in
                try Resolver.resolve(host: host, port: port, passive: false, numericOnly: true)
            }
            let addresses = resolved.map { $0.map(SendableSockAddr.init) }
            loop.execute { attempt.resolved(addresses) }
            return
        }
        resolverQueue.async {
            let resolved = Result { () throws(IOError) in try Resolver.resolve(host: host, port: port, passive: false) }
            let addresses = resolved.map { $0.map(SendableSockAddr.init) }
            loop.execute { attempt.resolved(addresses) }
        }
    }

    /// Blocking lookups run here. A queue of our own (it targets the overcommitting global queue and so gets
    /// threads as needed) rather than `DispatchQueue.global()`, whose few non-overcommit threads other blocking
    /// work may be holding.
    private static let resolverQueue = DispatchQueue(label: "proxyd.resolver", attributes: .concurrent)
}

/// `sockaddr_storage` is plain data; safe to hand across queues.
private struct SendableSockAddr: @unchecked Sendable {
    let value: SockAddr
    init(_ value: SockAddr) { self.value = value }
}

/// One `TCPConnector.connect` call. Confined to `loop` (hence `@unchecked Sendable`).
///
/// While an attempt waits for writability a single write source watches its fd. That source is always cancelled
/// first; what happens to the fd (hand it over, close it and try the next address, close it and fail) is decided
/// in the cancel handler, so an fd is never closed or handed on while a source still watches it.
private final class ConnectAttempt: @unchecked Sendable {
    private enum AfterCancel {
        case handOver
        case closeAndTryNext
        case closeAndFinish(IOError)
    }

    let loop: EventLoop
    private var completion: (@Sendable (Result<Int32, IOError>) -> Void)?
    private var timer: LoopTimer?
    private var addresses: [SockAddr] = []
    private var nextIndex = 0
    private var lastError: IOError?
    private var source: (any DispatchSourceWrite)?
    private var cancelInFlight = false
    private var afterCancel = AfterCancel.closeAndTryNext

    init(loop: EventLoop, completion: @escaping @Sendable (Result<Int32, IOError>) -> Void) {
        self.loop = loop
        self.completion = completion
    }

    func startTimer(_ timeout: Duration) {
        guard completion != nil else { return }
        timer = loop.scheduleTimer(after: timeout) { self.timedOut() }
    }

    func resolved(_ result: Result<[SendableSockAddr], IOError>) {
        guard completion != nil else { return }
        switch result {
        case .success(let addresses):
            self.addresses = addresses.map(\.value)
            tryNext()
        case .failure(let error):
            finish(.failure(error))
        }
    }

    private func tryNext() {
        while completion != nil && nextIndex < addresses.count {
            let address = addresses[nextIndex]
            nextIndex += 1
            let fd: Int32
            do {
                fd = try Posix.socket(domain: address.family, type: Posix.socketStream | Posix.nonBlockingCloexec)
            } catch {
                lastError = error
                continue
            }
            do {
                let connected = try address.withSockAddr { (pointer, length) throws(IOError) in
                    try Posix.connect(fd: fd, address: pointer, length: length)
                }
                if connected {
                    handOver(fd)
                } else {
                    watch(fd)
                }
                return
            } catch {
                try? Posix.close(fd: fd)
                lastError = error
            }
        }
        finish(.failure(lastError ?? IOError(errno: EHOSTUNREACH, function: "connect")))
    }

    private func watch(_ fd: Int32) {
        let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: loop.queue)
        source.setEventHandler { self.writable(fd) }
        source.setCancelHandler { self.cancelled(fd) }
        self.source = source
        source.activate()
    }

    private func writable(_ fd: Int32) {
        guard let source else { return }
        let soError: Int32
        do {
            soError = try Posix.getsockopt(fd: fd, level: SOL_SOCKET, name: SO_ERROR)
        } catch {
            soError = error.errno
        }
        if soError == 0 {
            afterCancel = .handOver
        } else {
            lastError = IOError(errno: soError, function: "connect")
            afterCancel = .closeAndTryNext
        }
        stopWatching(source)
    }

    private func stopWatching(_ source: any DispatchSourceWrite) {
        self.source = nil
        cancelInFlight = true
        source.cancel()
    }

    private func cancelled(_ fd: Int32) {
        cancelInFlight = false
        switch afterCancel {
        case .handOver:
            handOver(fd)
        case .closeAndTryNext:
            try? Posix.close(fd: fd)
            tryNext()
        case .closeAndFinish(let error):
            try? Posix.close(fd: fd)
            finish(.failure(error))
        }
    }

    private func handOver(_ fd: Int32) {
        guard completion != nil else { try? Posix.close(fd: fd); return }
        do {
            try Posix.setsockopt(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
        } catch {
            try? Posix.close(fd: fd)
            lastError = error
            tryNext()
            return
        }
        finish(.success(fd))
    }

    private func timedOut() {
        guard completion != nil else { return }
        let error = IOError(errno: ETIMEDOUT, function: "connect", detail: "i/o timeout")
        if let source {
            afterCancel = .closeAndFinish(error)
            stopWatching(source)
        } else if cancelInFlight {
            afterCancel = .closeAndFinish(error)      // the cancel handler closes the fd and reports
        } else {
            finish(.failure(error))                   // still resolving; the late result is ignored
        }
    }

    private func finish(_ result: Result<Int32, IOError>) {
        guard let completion else {
            if case .success(let fd) = result { try? Posix.close(fd: fd) }
            return
        }
        self.completion = nil
        timer?.cancel()
        timer = nil
        completion(result)
    }
}
