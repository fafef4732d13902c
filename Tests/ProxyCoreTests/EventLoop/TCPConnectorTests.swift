import Dispatch
import Foundation
import Glibc
import Testing
@testable import ProxyCore

/// What a connect completion saw.
struct ConnectOutcome: Sendable {
    let result: Result<Int32, IOError>
    let onLoop: Bool
}

extension EventLoopSuites {
@Suite("EventLoop TCPConnector")
struct EventLoopTCPConnectorTests {
    let loop = EventLoop(label: "test.connector")

    /// Connects and waits for the first completion; also returns the recorder to check "exactly once".
    func connect(host: String, port: UInt16, timeout: Duration = .seconds(5)) async -> (ConnectOutcome, Recorder<ConnectOutcome>) {
        let outcomes = Recorder<ConnectOutcome>()
        let loop = self.loop
        TCPConnector.connect(host: host, port: port, loop: loop, timeout: timeout) { result in
            outcomes.append(ConnectOutcome(result: result, onLoop: loop.inLoop))
        }
        _ = await TestIO.eventually(timeout: .seconds(15)) { !outcomes.values.isEmpty }
        return (outcomes.values.first ?? ConnectOutcome(result: .failure(IOError(errno: 0, function: "test: no completion")), onLoop: false),
                outcomes)
    }

    @Test(arguments: ["127.0.0.1", "localhost"])
    func connectsToALiveListener(host: String) async throws {
        let raw = TestSocket.listeningTCP()
        defer { close(raw.fd) }
        let (outcome, all) = await connect(host: host, port: raw.port)
        #expect(outcome.onLoop)
        let fd = try outcome.result.get()
        defer { close(fd) }
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(try Posix.getsockopt(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY) != 0)
        // The fd really is connected to our listener.
        let accepted = accept(raw.fd, nil, nil)
        #expect(accepted >= 0)
        TestIO.setTimeouts(accepted, seconds: 5)
        let sent = [UInt8]("x".utf8).withUnsafeBytes { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
        #expect(sent == 1)
        #expect(TestIO.read(accepted, count: 1) == Array("x".utf8))
        close(accepted)
        try? await Task.sleep(for: .milliseconds(20))
        #expect(all.values.count == 1)
    }

    @Test(.enabled(if: TestIO.ipv6LoopbackAvailable, "IPv6 loopback unavailable"))
    func connectsOverIPv6() async throws {
        let listener = try Listener.bindTCP(host: "::1", port: 0)
        let port = try #require(listener.localAddress.port)
        let (outcome, _) = await connect(host: "[::1]", port: port)
        let fd = try outcome.result.get()
        close(fd)
        listener.close()
    }

    @Test func refusedConnectionReportsTheError() async throws {
        // A port that was listening a moment ago and is closed now.
        let raw = TestSocket.listeningTCP()
        close(raw.fd)
        let (outcome, all) = await connect(host: "127.0.0.1", port: raw.port)
        #expect(outcome.onLoop)
        switch outcome.result {
        case .success(let fd):
            close(fd)
            Issue.record("connected to a closed port")
        case .failure(let error):
            #expect(error.errno == ECONNREFUSED)
            #expect(error.description == "connect: connection refused")
        }
        try? await Task.sleep(for: .milliseconds(20))
        #expect(all.values.count == 1)
    }

    @Test func timesOutAgainstAFullBacklog() async throws {
        // A listener that never accepts, with backlog 0: once its accept queue is full, Linux drops further SYNs
        // and a connect stays in progress. Fill it, then connect with a short timeout.
        let raw = TestSocket.listeningTCP(backlog: 0)
        defer { close(raw.fd) }
        let (fillers, saturated) = await TestIO.blocking { () -> ([Int32], Bool) in
            var fillers: [Int32] = []
            for _ in 0..<16 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                fillers.append(fd)
                _ = TestSocket.withAddress(.v4(host: "127.0.0.1", port: raw.port)) { address, length, _ in Glibc.connect(fd, address, length) }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&pfd, 1, 100) == 0 { return (fillers, true) }      // still in progress after 100 ms
            }
            return (fillers, false)
        }
        defer { fillers.forEach { close($0) } }
        try #require(saturated, "could not saturate the listen backlog")
        let started = ContinuousClock.now
        let (outcome, all) = await connect(host: "127.0.0.1", port: raw.port, timeout: .milliseconds(200))
        let elapsed = ContinuousClock.now - started
        #expect(outcome.onLoop)
        switch outcome.result {
        case .success(let fd):
            close(fd)
            Issue.record("connect unexpectedly succeeded")
        case .failure(let error):
            #expect(error.errno == ETIMEDOUT)
            #expect(error.description == "connect: i/o timeout")
        }
        #expect(elapsed >= .milliseconds(190))
        #expect(elapsed < .seconds(3))
        try? await Task.sleep(for: .milliseconds(50))
        #expect(all.values.count == 1)
    }

    @Test func lookupFailureReadsLikeGo() {
        // numericOnly keeps this free of DNS traffic; the error mapping is the same as for a real lookup.
        #expect(throws: IOError(errno: 0, function: "lookup not-an-ip", detail: "no such host")) {
            _ = try Resolver.resolve(host: "not-an-ip", port: 1, passive: false, numericOnly: true)
        }
        #expect(Resolver.isIPLiteral("127.0.0.1") && Resolver.isIPLiteral("[::1]") && !Resolver.isIPLiteral("localhost"))
        let error = IOError(errno: 0, function: "lookup nosuch", detail: "no such host")
        #expect(Listener.describeError(error, tcpHost: "nosuch", port: 8001) == "listen tcp: lookup nosuch: no such host")
    }
}
}

extension EventLoopSuites {
@Suite("EventLoop fd leaks")
struct EventLoopFDLeakTests {
    /// Opens 200 TCP connections through Listener + TCPConnector + StreamConnection (echo, then close from both
    /// sides) and checks that every socket is gone from /proc/self/fd afterwards.
    @Test func twoHundredConnectionsLeaveNoDescriptorBehind() async throws {
        _ = TestIO.ignoreSIGPIPE
        let group = EventLoopGroup(count: 2)
        let listener = try Listener.bindTCP(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress.port)
        let listenerTarget = try #require(TestIO.fdTarget(listenerFD(of: listener)))
        let servers = Recorder<RecordingDelegate>()
        let clients = Recorder<RecordingDelegate>()
        let targets = Recorder<String>()
        let failures = Recorder<IOError>()
        listener.start(group: group) { fd, _, loop in
            if let target = TestIO.fdTarget(fd) { targets.append(target) }
            let delegate = RecordingDelegate()
            delegate.echo = true
            delegate.closeOnEOF = true
            let connection = StreamConnection(fd: fd, loop: loop)
            servers.append(delegate)
            loop.execute {
                delegate.connection = connection
                connection.delegate = delegate
                connection.start()
            }
        }
        let count = 200
        for i in 0..<count {
            let loop = group.next()
            TCPConnector.connect(host: "127.0.0.1", port: port, loop: loop, timeout: .seconds(10)) { result in
                switch result {
                case .failure(let error):
                    failures.append(error)
                case .success(let fd):
                    if let target = TestIO.fdTarget(fd) { targets.append(target) }
                    let message = Array("ping \(i)".utf8)
                    let delegate = RecordingDelegate()
                    delegate.closeAfterReceiving = message.count
                    let connection = StreamConnection(fd: fd, loop: loop)
                    delegate.connection = connection
                    connection.delegate = delegate
                    connection.start()
                    connection.write(message)
                    clients.append(delegate)
                }
            }
        }
        let allClosed = await TestIO.eventually(timeout: .seconds(20)) {
            failures.values.count + clients.values.count == count && servers.values.count == count
        }
        #expect(allClosed)
        #expect(failures.values.isEmpty)
        for delegate in clients.values + servers.values {
            let loop = delegate.connection!.loop
            #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        }
        #expect(await TestIO.onLoop(group.loops[0]) { clients.values.allSatisfy { $0.failures.isEmpty } })
        await withCheckedContinuation { continuation in listener.close { continuation.resume() } }

        #expect(targets.values.count == 2 * count)
        let stillOpen = Set(TestIO.openFDTargets()).intersection(targets.values + [listenerTarget])
        #expect(stillOpen.isEmpty, "leaked: \(stillOpen.count)")
        // No process-wide socket count here: the interop and end-to-end suites run in the same test process at
        // the same time and open sockets of their own. The socket inodes above identify exactly ours.
    }

    private func listenerFD(of listener: Listener) -> Int32 {
        // Find the fd whose socket is bound to the listener's port.
        let port = listener.localAddress.port!
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            guard let fd = Int32(entry) else { continue }
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
            }
            var accepting: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            if ok, address.sin_family == sa_family_t(AF_INET), UInt16(bigEndian: address.sin_port) == port,
               getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &size) == 0, accepting != 0 {
                return fd
            }
        }
        return -1
    }
}
}
