import Glibc

/// A socket address as the rest of proxyd sees it: no C types.
public enum SocketAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(host: String, port: UInt16)
    case v6(host: String, port: UInt16)
    case unix(path: String)

    /// `"127.0.0.1:8001"`, `"[::1]:8001"`, or the path for unix sockets.
    public var description: String {
        switch self {
        case .v4(let host, let port): return "\(host):\(port)"
        case .v6(let host, let port): return "[\(host)]:\(port)"
        case .unix(let path): return path
        }
    }

    /// The IP literal without brackets (`"127.0.0.1"`, `"::1"`), e.g. for `X-Forwarded-For`; `nil` for unix.
    public var ipString: String? {
        switch self {
        case .v4(let host, _), .v6(let host, _): return host
        case .unix: return nil
        }
    }

    /// The port for TCP addresses, `nil` for unix.
    public var port: UInt16? {
        switch self {
        case .v4(_, let port), .v6(_, let port): return port
        case .unix: return nil
        }
    }
}

/// A C socket address of any family, stored by value. Internal to EventLoop/.
struct SockAddr {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)

    var family: Int32 { Int32(storage.ss_family) }

    /// Copies `length` bytes from a C address (e.g. an `addrinfo.ai_addr`).
    init(copying address: UnsafePointer<sockaddr>, length: socklen_t) {
        let count = min(Int(length), MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: address, count: count))
        }
        self.length = socklen_t(count)
    }

    init() {}

    /// A unix-domain address. - Throws: `IOError(ENAMETOOLONG, "bind")` if `path` does not fit `sun_path`.
    init(unixPath path: String, function: String = "bind") throws(IOError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
            throw IOError(errno: bytes.isEmpty || bytes.contains(0) ? EINVAL : ENAMETOOLONG, function: function)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
        self = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { SockAddr(copying: $0, length: length) }
        }
    }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(IOError) -> R) throws(IOError) -> R {
        var copy = storage
        let length = self.length
        return try withUnsafePointer(to: &copy) { (pointer) throws(IOError) -> R in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(IOError) -> R in
                try body(address, length)
            }
        }
    }

    /// Fills an address with `getsockname`/`getpeername`-style `fill`.
    static func filled(_ fill: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) throws(IOError) -> Void) throws(IOError) -> SockAddr {
        var result = SockAddr()
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { (pointer) throws(IOError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(IOError) in
                try fill(address, &length)
            }
        }
        result.storage = storage
        result.length = min(length, socklen_t(MemoryLayout<sockaddr_storage>.size))
        return result
    }

    /// The Swift view. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack listeners) become `.v4`.
    var socketAddress: SocketAddress {
        var storage = self.storage
        let length = Int(self.length)
        return withUnsafeBytes(of: &storage) { raw -> SocketAddress in
            switch family {
            case AF_INET:
                let address = raw.loadUnaligned(as: sockaddr_in.self)
                return .v4(host: SockAddr.ntop(AF_INET, address.sin_addr), port: UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                let address = raw.loadUnaligned(as: sockaddr_in6.self)
                let port = UInt16(bigEndian: address.sin6_port)
                let bytes = withUnsafeBytes(of: address.sin6_addr) { Array($0) }
                if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                    return .v4(host: "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])", port: port)
                }
                return .v6(host: SockAddr.ntop(AF_INET6, address.sin6_addr), port: port)
            case AF_UNIX:
                let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
                guard length > offset else { return .unix(path: "") }
                let pathBytes = raw[offset..<min(length, raw.count)].prefix { $0 != 0 }
                return .unix(path: String(decoding: pathBytes, as: UTF8.self))
            default:
                return .unix(path: "<family \(family)>")
            }
        }
    }

    private static func ntop<A>(_ family: Int32, _ address: A) -> String {
        var address = address
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = withUnsafePointer(to: &address) { pointer in
            buffer.withUnsafeMutableBufferPointer { out in
                inet_ntop(family, pointer, out.baseAddress, socklen_t(out.count)) != nil
            }
        }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Result of a `getaddrinfo` lookup, copied out of the C list.
enum Resolver {
    /// Blocking `getaddrinfo(host, port)` for TCP stream sockets.
    /// - Parameters:
    ///   - host: DNS name or IP literal; `[::1]` brackets are stripped.
    ///   - passive: `AI_PASSIVE` (for bind).
    /// - Throws: `IOError` whose description reads `"lookup <host>: no such host"` (Go style).
    static func resolve(host: String, port: UInt16, passive: Bool, numericOnly: Bool = false) throws(IOError) -> [SockAddr] {
        let name = bare(host)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Posix.socketStream
        hints.ai_protocol = Int32(IPPROTO_TCP)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | (numericOnly ? AI_NUMERICHOST : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            let savedErrno = Glibc.errno
            let text: String
            switch rc {
            case EAI_NONAME, -5 /* EAI_NODATA, a _GNU_SOURCE name */, EAI_FAIL: text = "no such host"
            case EAI_SYSTEM: text = IOError.goStyleMessage(errno: savedErrno)
            default: text = gai_strerror(rc).map { String(cString: $0) } ?? "getaddrinfo error \(rc)"
            }
            throw IOError(errno: rc == EAI_SYSTEM ? savedErrno : 0, function: "lookup \(name)", detail: text)
        }
        defer { freeaddrinfo(list) }
        var result: [SockAddr] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let address = entry.pointee.ai_addr,
               entry.pointee.ai_family == AF_INET || entry.pointee.ai_family == AF_INET6 {
                result.append(SockAddr(copying: address, length: entry.pointee.ai_addrlen))
            }
            cursor = entry.pointee.ai_next
        }
        if result.isEmpty { throw IOError(errno: 0, function: "lookup \(name)", detail: "no such host") }
        return result
    }

    /// `host` without surrounding `[` `]`.
    static func bare(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    /// The network-order bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) literal (brackets allowed), `nil` for
    /// anything else (a DNS name).
    static func ipLiteralBytes(_ host: String) -> [UInt8]? {
        let name = bare(host)
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// Whether `host` is an IPv4 or IPv6 literal (brackets allowed), i.e. resolving it never blocks.
    static func isIPLiteral(_ host: String) -> Bool {
        let name = bare(host)
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }
}
