import Dispatch
import Foundation
import Glibc
import Testing
@testable import ProxyCore

/// What a listener callback received.
struct Accepted: Sendable {
    let fd: Int32
    let peer: SocketAddress
    let loopIndex: Int?
}

extension EventLoopSuites {
@Suite("EventLoop Listener")
struct EventLoopListenerTests {
    let group = EventLoopGroup(count: 2)

    /// Starts `listener`, connects `count` blocking clients to `address`, returns what was accepted.
    func acceptClients(_ listener: Listener, connectTo address: SocketAddress, count: Int = 1) async -> ([Accepted], [Int32]) {
        let accepted = Recorder<Accepted>()
        let group = self.group
        listener.start(group: group) { fd, peer, loop in
            accepted.append(Accepted(fd: fd, peer: peer, loopIndex: group.loops.firstIndex { $0 === loop }))
        }
        var clients: [Int32] = []
        for _ in 0..<count {
            let client = await TestIO.blocking { TestSocket.connectBlocking(to: address) }
            clients.append(client)
        }
        _ = await TestIO.eventually { accepted.values.count == count }
        return (accepted.values, clients)
    }

    func closeAndWait(_ listener: Listener) async {
        await withCheckedContinuation { continuation in listener.close { continuation.resume() } }
    }

    @Test func bindsIPv4LoopbackOnAnEphemeralPort() async throws {
        let listener = try Listener.bindTCP(host: "127.0.0.1", port: 0)
        guard case .v4(let host, let port) = listener.localAddress else {
            Issue.record("unexpected address \(listener.localAddress)"); return
        }
        #expect(host == "127.0.0.1")
        #expect(port != 0)
        #expect(listener.localAddress.description == "127.0.0.1:\(port)")
        let (accepted, clients) = await acceptClients(listener, connectTo: listener.localAddress, count: 2)
        #expect(accepted.count == 2)
        for item in accepted {
            #expect(item.peer.ipString == "127.0.0.1")
            #expect(fcntl(item.fd, F_GETFL) & O_NONBLOCK != 0)
            #expect(fcntl(item.fd, F_GETFD) & FD_CLOEXEC != 0)
            close(item.fd)
        }
        #expect(Set(accepted.compactMap(\.loopIndex)) == [0, 1])
        clients.forEach { close($0) }
        await closeAndWait(listener)
        // Closed: nothing listens on the port any more.
        #expect(TestSocket.connectError(to: listener.localAddress) == ECONNREFUSED)
    }

    @Test(.enabled(if: TestIO.ipv6LoopbackAvailable, "IPv6 loopback unavailable"), arguments: ["::1", "[::1]"])
    func bindsIPv6Loopback(host: String) async throws {
        let listener = try Listener.bindTCP(host: host, port: 0)
        guard case .v6("::1", let port) = listener.localAddress else {
            Issue.record("unexpected address \(listener.localAddress)"); return
        }
        #expect(port != 0)
        #expect(listener.localAddress.description == "[::1]:\(port)")
        let (accepted, clients) = await acceptClients(listener, connectTo: listener.localAddress)
        #expect(accepted.first?.peer.ipString == "::1")
        accepted.forEach { close($0.fd) }
        clients.forEach { close($0) }
        await closeAndWait(listener)
    }

    @Test(.enabled(if: TestIO.ipv6LoopbackAvailable, "IPv6 unavailable"))
    func wildcardV6IsDualStack() async throws {
        let listener = try Listener.bindTCP(host: "::", port: 0)
        let port = try #require(listener.localAddress.port)
        let (accepted, clients) = await acceptClients(listener, connectTo: .v4(host: "127.0.0.1", port: port))
        // IPv4-mapped peers are reported as plain IPv4.
        #expect(accepted.first?.peer.ipString == "127.0.0.1")
        accepted.forEach { close($0.fd) }
        clients.forEach { close($0) }
        await closeAndWait(listener)
    }

    @Test func bindsLocalhostAndWildcardV4() async throws {
        let local = try Listener.bindTCP(host: "localhost", port: 0)
        #expect(["127.0.0.1", "::1"].contains(local.localAddress.ipString))
        let any = try Listener.bindTCP(host: "0.0.0.0", port: 0)
        #expect(any.localAddress.ipString == "0.0.0.0")
        await closeAndWait(local)
        await closeAndWait(any)
    }

    @Test func portInUseGivesAGoLikeMessage() async throws {
        let first = try Listener.bindTCP(host: "127.0.0.1", port: 0)
        let port = try #require(first.localAddress.port)
        do {
            _ = try Listener.bindTCP(host: "127.0.0.1", port: port)
            Issue.record("second bind succeeded")
        } catch {
            #expect(error.errno == EADDRINUSE)
            #expect(error.function == "bind")
            #expect(Listener.describeError(error, tcpHost: "127.0.0.1", port: port)
                    == "listen tcp 127.0.0.1:\(port): bind: address already in use")
            #expect(Listener.describeError(error, tcpHost: "[::1]", port: port)
                    == "listen tcp [::1]:\(port): bind: address already in use")
        }
        await closeAndWait(first)
    }

    @Test func unixSocketHasMode0700AndIsUnlinkedOnClose() async throws {
        let directory = TestIO.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/proxyd.sock"
        let listener = try Listener.bindUnix(path: path)
        #expect(listener.localAddress == .unix(path: path))
        var status = stat()
        #expect(lstat(path, &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFSOCK)
        #expect(status.st_mode & 0o777 == 0o700)
        let (accepted, clients) = await acceptClients(listener, connectTo: .unix(path: path))
        #expect(accepted.count == 1)
        accepted.forEach { close($0.fd) }
        clients.forEach { close($0) }
        await closeAndWait(listener)
        #expect(lstat(path, &status) == -1 && errno == ENOENT)
    }

    @Test func staleUnixSocketIsReplaced() async throws {
        let directory = TestIO.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/stale.sock"
        // A socket file nobody listens on any more (a crashed previous run).
        let fd = TestSocket.bindUnix(path: path)
        close(fd)
        var status = stat()
        #expect(lstat(path, &status) == 0)
        let listener = try Listener.bindUnix(path: path)
        let (accepted, clients) = await acceptClients(listener, connectTo: .unix(path: path))
        #expect(accepted.count == 1)
        accepted.forEach { close($0.fd) }
        clients.forEach { close($0) }
        await closeAndWait(listener)
        #expect(lstat(path, &status) == -1)
    }

    @Test func liveUnixSocketIsNotStolen() async throws {
        let directory = TestIO.makeTemporaryDirectory()
        defer { rmdir(directory) }
        let path = directory + "/live.sock"
        let first = try Listener.bindUnix(path: path)
        #expect(throws: IOError(errno: EADDRINUSE, function: "bind")) { _ = try Listener.bindUnix(path: path) }
        var status = stat()
        #expect(lstat(path, &status) == 0)
        await closeAndWait(first)
        #expect(lstat(path, &status) == -1)
    }

    @Test func regularFileIsNeverRemoved() throws {
        let directory = TestIO.makeTemporaryDirectory()
        let path = directory + "/important.txt"
        defer { unlink(path); rmdir(directory) }
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try Listener.bindUnix(path: path)
            Issue.record("bindUnix over a regular file succeeded")
        } catch {
            #expect(error.errno == EADDRINUSE)
            #expect(Listener.describeError(error, unixPath: path) == "listen unix \(path): bind: address already in use")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test func inheritedListeningFDIsAdopted() async throws {
        let raw = TestSocket.listeningTCP()
        let listener = try Listener(inheritedFD: raw.fd)
        #expect(listener.localAddress == .v4(host: "127.0.0.1", port: raw.port))
        #expect(fcntl(raw.fd, F_GETFL) & O_NONBLOCK != 0)
        let (accepted, clients) = await acceptClients(listener, connectTo: listener.localAddress)
        #expect(accepted.count == 1)
        accepted.forEach { close($0.fd) }
        clients.forEach { close($0) }
        await closeAndWait(listener)

        let notListening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(notListening) }
        #expect(throws: IOError(errno: EINVAL, function: "listen")) { _ = try Listener(inheritedFD: notListening) }
    }

    @Test func closeWithoutStartClosesTheFD() async throws {
        let listener = try Listener.bindTCP(host: "127.0.0.1", port: 0)
        await closeAndWait(listener)
        await closeAndWait(listener)        // idempotent
        #expect(TestSocket.connectError(to: listener.localAddress) == ECONNREFUSED)
    }
}
}

/// Raw blocking sockets for the test side.
enum TestSocket {
    static func withAddress<R>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t, Int32) -> R) -> R {
        switch address {
        case .v4(let host, let port):
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &a.sin_addr)
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET) }
            }
        case .v6(let host, let port):
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &a.sin6_addr)
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6) }
            }
        case .unix(let path):
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &a.sun_path) { raw in
                let bytes = Array(path.utf8)
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size), AF_UNIX) }
            }
        }
    }

    /// A blocking client connected to `address` (traps on failure: tests connect only to live listeners).
    static func connectBlocking(to address: SocketAddress) -> Int32 {
        withAddress(address) { pointer, length, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let rc = connect(fd, pointer, length)
            precondition(rc == 0, "connect to \(address) failed: \(errno)")
            TestIO.setTimeouts(fd, seconds: 5)
            return fd
        }
    }

    /// The errno of a blocking connect attempt (0 on success; the socket is closed either way).
    static func connectError(to address: SocketAddress) -> Int32 {
        withAddress(address) { pointer, length, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { close(fd) }
            return connect(fd, pointer, length) == 0 ? 0 : errno
        }
    }

    static func bindUnix(path: String) -> Int32 {
        withAddress(.unix(path: path)) { pointer, length, _ in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            precondition(bind(fd, pointer, length) == 0)
            precondition(listen(fd, 1) == 0)
            return fd
        }
    }

    /// A blocking TCP socket listening on 127.0.0.1 with an ephemeral port.
    static func listeningTCP(backlog: Int32 = 8) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(fd, $0, length) == 0)
                precondition(listen(fd, backlog) == 0)
                precondition(getsockname(fd, $0, &length) == 0)
            }
        }
        return (fd, UInt16(bigEndian: a.sin_port))
    }
}
