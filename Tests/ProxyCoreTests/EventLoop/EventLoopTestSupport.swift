import Dispatch
import Foundation
import Glibc
import Testing
@testable import ProxyCore

/// All EventLoop suites are nested here and run one test at a time: the fd-leak test counts the sockets of the
/// whole process, which the other EventLoop tests would disturb. (They are quick; serial costs a few seconds.)
@Suite("EventLoop", .serialized)
enum EventLoopSuites {}

/// Helpers shared by the EventLoop tests. Peers are plain blocking sockets with receive/send timeouts, driven on
/// global queues so a test never blocks the cooperative pool and never hangs.
enum TestIO {
    static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// A connected unix stream pair: `ours` non-blocking (for a `StreamConnection`), `peer` blocking with 5 s timeouts.
    static func socketPair() -> (ours: Int32, peer: Int32) {
        _ = ignoreSIGPIPE
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        precondition(rc == 0, "socketpair failed: \(errno)")
        setNonBlocking(fds[0])
        setTimeouts(fds[1], seconds: 5)
        return (fds[0], fds[1])
    }

    /// A connected TCP pair over 127.0.0.1: `ours` non-blocking, `peer` blocking with timeouts.
    static func tcpPair() -> (ours: Int32, peer: Int32) {
        _ = ignoreSIGPIPE
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                precondition(bind(listener, raw, length) == 0)
                precondition(listen(listener, 8) == 0)
                precondition(getsockname(listener, raw, &length) == 0)
            }
        }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                precondition(connect(client, raw, length) == 0)
            }
        }
        let server = accept(listener, nil, nil)
        precondition(server >= 0)
        close(listener)
        setNonBlocking(server)
        setTimeouts(client, seconds: 5)
        return (server, client)
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all bytes on a blocking fd. - Returns: false on error/timeout.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }

    /// Reads until `count` bytes, EOF, error or timeout (blocking fd). `chunk` bounds each read; `pause` sleeps
    /// between reads to simulate a slow reader.
    static func read(_ fd: Int32, count: Int, chunk: Int = 65536, pauseMicroseconds: UInt32 = 0) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var buffer = [UInt8](repeating: 0, count: chunk)
        while result.count < count {
            let want = min(chunk, count - result.count)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            result += buffer[0..<n]
            if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
        }
        return result
    }

    /// Whether a blocking read on `fd` sees EOF (returns 0) next.
    static func readsEOF(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    /// Blocking peer I/O runs here: its own concurrent queue gets threads as needed, unlike the few
    /// non-overcommit threads of `DispatchQueue.global()`.
    static let blockingQueue = DispatchQueue(label: "test.blocking", attributes: .concurrent)

    /// Runs blocking `body` off the cooperative pool.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            blockingQueue.async { continuation.resume(returning: body()) }
        }
    }

    /// Runs `body` on the loop and returns its result.
    static func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            loop.execute { continuation.resume(returning: body()) }
        }
    }

    /// Polls `condition` on `loop` every 2 ms until it holds or `timeout` passes.
    static func eventually(on loop: EventLoop, timeout: Duration = .seconds(10),
                           _ condition: @escaping @Sendable () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await onLoop(loop, condition) { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return await onLoop(loop, condition)
    }

    /// Polls a thread-safe condition.
    static func eventually(timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return condition()
    }

    /// The `/proc/self/fd` link target of `fd`, e.g. `"socket:[12345]"` (identifies the socket even after the
    /// number is reused).
    static func fdTarget(_ fd: Int32) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
    }

    /// Targets of all entries of `/proc/self/fd`.
    static func openFDTargets() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
    }

    static func pattern(count: Int, seed: Int = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &+ seed) % 251) }
    }

    static func makeTemporaryDirectory() -> String {
        var template = Array("/tmp/proxyd-eventloop-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(path != nil)
        return String(cString: path!)
    }

    static let ipv6LoopbackAvailable: Bool = {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }()
}

/// Records every delegate event. Confined to the connection's loop; read it through `TestIO.onLoop`.
final class RecordingDelegate: StreamConnectionDelegate, @unchecked Sendable {
    enum Event: Equatable { case read(Int), eof, drain, fail(Int32), close }

    var events: [Event] = []
    var bytes: [UInt8] = []
    var readCalls = 0
    var maxReadSize = 0
    var eofCount = 0
    var drainCount = 0
    var failures: [IOError] = []
    var closeCount = 0
    /// Strong reference so the test does not have to keep the connection alive.
    var connection: StreamConnection?

    /// EOF callbacks, readable from any thread: a test can still observe a spinning loop that starves its queue.
    let eofEvents = Recorder<Int>()

    var echo = false
    var closeOnFirstRead = false
    var closeOnEOF = false
    var closeAfterReceiving: Int?

    func connection(_ c: StreamConnection, didRead bytes: ByteBuffer) {
        c.loop.assertInLoop()
        events.append(.read(bytes.readableBytes))
        readCalls += 1
        maxReadSize = max(maxReadSize, bytes.readableBytes)
        self.bytes += bytes.readableBytesArray
        if echo { c.write(bytes) }
        if closeOnFirstRead { c.close(); c.close() }
        if let limit = closeAfterReceiving, self.bytes.count >= limit { c.close() }
    }

    func connectionDidReadEOF(_ c: StreamConnection) {
        c.loop.assertInLoop()
        events.append(.eof)
        eofCount += 1
        if eofEvents.values.count < 1000 { eofEvents.append(eofCount) }
        if closeOnEOF { c.close() }
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {
        c.loop.assertInLoop()
        events.append(.drain)
        drainCount += 1
    }

    func connection(_ c: StreamConnection, didFail error: IOError) {
        c.loop.assertInLoop()
        events.append(.fail(error.errno))
        failures.append(error)
    }

    func connectionDidClose(_ c: StreamConnection) {
        c.loop.assertInLoop()
        events.append(.close)
        closeCount += 1
    }

    /// Creates a connection on `fd`, installs this delegate and starts it on the loop.
    static func start(fd: Int32, loop: EventLoop, configure: @escaping @Sendable (RecordingDelegate, StreamConnection) -> Void = { _, _ in })
        async -> (RecordingDelegate, StreamConnection) {
        let delegate = RecordingDelegate()
        let connection = StreamConnection(fd: fd, loop: loop)
        await TestIO.onLoop(loop) {
            delegate.connection = connection
            connection.delegate = delegate
            configure(delegate, connection)
            connection.start()
        }
        return (delegate, connection)
    }
}

/// A weak reference a `@Sendable` closure may poll.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}

/// A thread-safe counter/recorder for callbacks that may run on any queue.
final class Recorder<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [T] = []
    func append(_ value: T) { lock.lock(); storage.append(value); lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return storage }
}
