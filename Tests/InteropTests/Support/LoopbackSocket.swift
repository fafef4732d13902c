#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket failure in the interop tests' client (errno text included).
struct LoopbackSocketError: Error, CustomStringConvertible {
    let description: String
}

#if canImport(Glibc)
private let sendFlags = Int32(MSG_NOSIGNAL)
#else
private let sendFlags: Int32 = 0
#endif

private func systemSend(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    send(fd, pointer, count, sendFlags)
}

/// The interop tests' TCP connection to 127.0.0.1, through which they pump our TLS and HTTP/2 engines by hand
/// (nothing of proxyd's event loop is involved). Reads never block longer than asked (poll first); writes block,
/// bounded by a 5 s send timeout, so a stuck test fails instead of hanging.
final class LoopbackSocket {
    let fd: Int32

    init(port: Int) throws {
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw LoopbackSocketError(description: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw LoopbackSocketError(description: "connect to 127.0.0.1:\(port): errno \(code)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { systemSend(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else {
                if errno == EINTR { continue }
                throw LoopbackSocketError(description: errno == EAGAIN ? "send timed out" : "send: errno \(errno)")
            }
            offset += n
        }
    }

    /// Waits up to `milliseconds` for input, then reads what is there: nil when nothing arrived in time, `[]` at EOF.
    func receive(waitingUpTo milliseconds: Int32, max: Int = 256 * 1024) throws -> [UInt8]? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready < 0 {
            if errno == EINTR { return nil }
            throw LoopbackSocketError(description: "poll: errno \(errno)")
        }
        guard ready > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n >= 0 { return Array(buffer[..<n]) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw LoopbackSocketError(description: "recv: errno \(errno)")
        }
    }

    /// Waits for input (up to 5 s, then throws) and reads it: `[]` at EOF.
    func receive(max: Int = 64 * 1024) throws -> [UInt8] {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if let bytes = try receive(waitingUpTo: 100, max: max) { return bytes }
        }
        throw LoopbackSocketError(description: "receive timed out")
    }
}
