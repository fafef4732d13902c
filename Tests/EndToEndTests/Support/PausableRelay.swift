import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP relay in front of the stand-in that can stop forwarding bytes without closing anything: to the
/// proxy it looks like an apiserver that went silent (a dead peer behind a NAT, a frozen process).
final class PausableRelay: Sendable {
    let port: Int
    private let listenFD: Int32
    private let targetPort: Int
    private let state = Mutex<(paused: Bool, stopped: Bool, accepted: Int, fds: [Int32])>((false, false, 0, []))

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw ChildError("relay: cannot listen (\(errno))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listenFD = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Connections accepted so far.
    var accepted: Int { state.withLock { $0.accepted } }

    /// Stops (or resumes) forwarding in both directions; sockets stay open.
    func setPaused(_ paused: Bool) { state.withLock { $0.paused = paused } }

    func stop() {
        let fds = state.withLock { s in
            s.stopped = true
            return s.fds
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        Glibc.close(listenFD)
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listenFD, nil, nil)
            if client < 0 { return }
            guard let upstream = try? RawClient(port: targetPort) else {
                Glibc.close(client)
                continue
            }
            let upstreamFD = dup(upstream.fd)
            upstream.close()
            let stopped = state.withLock { s in
                s.accepted += 1
                s.fds += [client, upstreamFD]
                return s.stopped
            }
            if stopped { return }
            Thread { [self] in pump(from: client, to: upstreamFD) }.start()
            Thread { [self] in pump(from: upstreamFD, to: client) }.start()
        }
    }

    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let (paused, stopped) = state.withLock { ($0.paused, $0.stopped) }
            if stopped { break }
            if paused {
                usleep(20_000)
                continue
            }
            var poller = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 50) <= 0 { continue }
            // Re-check: bytes that arrive while paused must stay unforwarded.
            if state.withLock({ $0.paused }) { continue }
            let n = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            var offset = 0
            while offset < n {
                let w = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL)) }
                if w <= 0 { break }
                offset += w
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }
}
