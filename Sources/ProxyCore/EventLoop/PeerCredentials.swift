import Glibc

/// Who owns the other end of an accepted local connection.
///
/// - unix sockets: the peer's credentials as the kernel recorded them at `connect` (`SO_PEERCRED`).
/// - TCP: the peer socket is looked up by its address pair with one `NETLINK_SOCK_DIAG` (`inet_diag`) request, which
///   reports the uid that owns it; where netlink is not available (seccomp filters, unusual kernels), the `uid`
///   column of `/proc/net/tcp` or `/proc/net/tcp6`. A peer whose socket is not found on this machine's network
///   namespace is remote (or already gone).
public enum PeerOwner: Sendable, Equatable {
    /// The peer socket belongs to this uid.
    case uid(UInt32)
    /// No local socket matches the peer address: the peer is on another machine or network namespace, or has
    /// already closed its socket.
    case notLocal
    /// The lookup itself failed (reason in the text).
    case unknown(String)
}

/// Looks up peer owners for the connections one event loop accepts. Confined to that loop: it keeps one netlink
/// socket open and reuses it (one request and one reply per connection).
///
/// The netlink socket is owned by this object and closed in `deinit`.
public final class PeerOwnerLookup {
    private var netlinkFD: Int32 = -1
    private var netlinkFailed = false
    private var sequence: UInt32 = 0
    private var replyBuffer = [UInt8](repeating: 0, count: 8192)
    /// Whether lookups go to `/proc/net/tcp*` because netlink did not work (for tests and a one-time log line).
    public private(set) var usesProcFallback = false

    public init() {}

    deinit {
        if netlinkFD >= 0 { try? Posix.close(fd: netlinkFD) }
    }

    /// The owner of the socket at the other end of `fd`, an accepted connection.
    /// - Parameters:
    ///   - fd: the accepted socket (not owned; only queried).
    ///   - peer: its peer address as `accept` reported it.
    public func owner(ofPeerOf fd: Int32, peer: SocketAddress) -> PeerOwner {
        if case .unix = peer {
            do {
                return .uid(try PeerOwnerLookup.unixPeerUID(fd: fd))
            } catch {
                return .unknown("SO_PEERCRED: \(error)")
            }
        }
        let local: SocketAddress
        do {
            local = try SockAddr.filled { (pointer, length) throws(IOError) in
                try Posix.getsockname(fd: fd, address: pointer, length: length)
            }.socketAddress
        } catch {
            return .unknown("getsockname: \(error)")
        }
        guard let client = InetEndpoint(peer), let server = InetEndpoint(local) else {
            return .unknown("not an IP address pair: \(peer) → \(local)")
        }
        if !netlinkFailed {
            switch netlinkOwner(client: client, server: server) {
            case .some(let owner): return owner
            case .none: break       // netlink unusable: fall back for good
            }
        }
        usesProcFallback = true
        return PeerOwnerLookup.procOwner(client: client, server: server)
    }

    /// The user proxyd runs as (`geteuid`): the owner of the sockets it creates, and the uid it serves by default.
    public static var effectiveUID: UInt32 { geteuid() }

    // MARK: unix sockets

    /// `SO_PEERCRED`: the uid of the process that connected (as of `connect`).
    static func unixPeerUID(fd: Int32) throws(IOError) -> UInt32 {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc imports it only with _GNU_SOURCE).
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        let rc = withUnsafeMutableBytes(of: &credentials) { raw in
            Glibc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, raw.baseAddress, &length)
        }
        if rc != 0 { throw IOError(errno: Glibc.errno, function: "getsockopt") }
        return credentials.1
    }

    // MARK: netlink (inet_diag)

    /// One `SOCK_DIAG_BY_FAMILY` exact lookup. `nil` when netlink itself does not work (then `netlinkFailed`).
    private func netlinkOwner(client: InetEndpoint, server: InetEndpoint) -> PeerOwner? {
        if netlinkFD < 0 {
            let fd = Glibc.socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Posix.nonBlockingCloexec, InetDiag.netlinkSockDiag)
            guard fd >= 0 else {
                netlinkFailed = true
                return nil
            }
            netlinkFD = fd
        }
        sequence &+= 1
        let request = InetDiag.request(client: client, server: server, sequence: sequence)
        let sent = request.withUnsafeBytes { raw in Glibc.send(netlinkFD, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else {
            netlinkFailed = true
            return nil
        }
        // The kernel answers inside send(): the reply is already queued. Skip stale replies (other sequence numbers).
        for _ in 0..<8 {
            let n = replyBuffer.withUnsafeMutableBytes { raw in
                Glibc.recv(netlinkFD, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT))
            }
            if n < 0 {
                let err = Glibc.errno
                if err == EINTR { continue }
                if err == EAGAIN || err == EWOULDBLOCK { break }
                netlinkFailed = true
                return nil
            }
            switch InetDiag.parseReply(replyBuffer[0..<n], sequence: sequence) {
            case .owner(let uid): return .uid(uid)
            case .notFound: return .notLocal
            case .otherSequence: continue
            case .unsupported:
                netlinkFailed = true
                return nil
            }
        }
        return .unknown("no netlink reply")
    }

    // MARK: /proc/net/tcp fallback

    static func procOwner(client: InetEndpoint, server: InetEndpoint) -> PeerOwner {
        // An IPv6 socket connected to an IPv4-mapped address is listed in tcp6 with mapped addresses.
        var candidates: [(file: String, client: InetEndpoint, server: InetEndpoint)] = []
        if client.isIPv6 {
            candidates.append(("/proc/net/tcp6", client, server))
        } else {
            candidates.append(("/proc/net/tcp", client, server))
            candidates.append(("/proc/net/tcp6", client.mappedToIPv6, server.mappedToIPv6))
        }
        var readAny = false
        for candidate in candidates {
            guard let table = try? Posix.readFile(atPath: candidate.file) else { continue }
            readAny = true
            if let uid = ProcNetTCP.owner(in: table, local: candidate.client, remote: candidate.server) {
                return .uid(uid)
            }
        }
        return readAny ? .notLocal : .unknown("neither netlink sock_diag nor /proc/net/tcp is available")
    }
}

/// An IP address (network-order bytes) and port.
struct InetEndpoint: Equatable {
    var address: [UInt8]   // 4 or 16 bytes
    var port: UInt16

    var isIPv6: Bool { address.count == 16 }

    init(address: [UInt8], port: UInt16) {
        self.address = address
        self.port = port
    }

    init?(_ socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let host, let port), .v6(let host, let port):
            guard let bytes = Resolver.ipLiteralBytes(host) else { return nil }
            self.init(address: bytes, port: port)
        case .unix:
            return nil
        }
    }

    /// `::ffff:a.b.c.d` for an IPv4 address; unchanged for IPv6.
    var mappedToIPv6: InetEndpoint {
        guard !isIPv6 else { return self }
        return InetEndpoint(address: [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + address, port: port)
    }
}

/// The `NETLINK_SOCK_DIAG` wire format (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h), which the Glibc
/// module does not import: built and read as bytes, in host byte order except where the kernel uses network order
/// (ports and addresses).
enum InetDiag {
    static let netlinkSockDiag: Int32 = 4
    static let sockDiagByFamily: UInt16 = 20
    static let nlmFRequest: UInt16 = 1
    static let nlmsgError: UInt16 = 2
    static let nlmsgDone: UInt16 = 3
    static let headerSize = 16                 // struct nlmsghdr
    static let requestSize = headerSize + 56   // + struct inet_diag_req_v2
    /// Offset of `idiag_uid` in a reply message: nlmsghdr, then inet_diag_msg's family/state/timer/retrans (4),
    /// sockid (48), expires/rqueue/wqueue (12).
    static let uidOffset = headerSize + 4 + 48 + 12

    /// An exact lookup of the socket whose local end is `client` and remote end is `server`: the peer of a
    /// connection proxyd accepted on `server`.
    static func request(client: InetEndpoint, server: InetEndpoint, sequence: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(requestSize)
        append32(&out, UInt32(requestSize))
        append16(&out, sockDiagByFamily)
        append16(&out, nlmFRequest)
        append32(&out, sequence)
        append32(&out, 0)                                       // port id: the kernel
        out.append(UInt8(client.isIPv6 ? AF_INET6 : AF_INET))   // sdiag_family
        out.append(UInt8(IPPROTO_TCP))                          // sdiag_protocol
        out.append(0)                                           // idiag_ext
        out.append(0)                                           // pad
        append32(&out, 0xFFFF_FFFF)                             // idiag_states: all
        out.append(UInt8(client.port >> 8)); out.append(UInt8(client.port & 0xff))   // idiag_sport (network order)
        out.append(UInt8(server.port >> 8)); out.append(UInt8(server.port & 0xff))   // idiag_dport
        out += padded16(client.address)                         // idiag_src
        out += padded16(server.address)                         // idiag_dst
        append32(&out, 0)                                       // idiag_if
        append32(&out, 0xFFFF_FFFF)                             // idiag_cookie: INET_DIAG_NOCOOKIE
        append32(&out, 0xFFFF_FFFF)
        return out
    }

    enum Reply: Equatable {
        case owner(UInt32)
        case notFound
        case otherSequence
        case unsupported
    }

    /// Reads the first message of a reply datagram.
    static func parseReply(_ bytes: ArraySlice<UInt8>, sequence: UInt32) -> Reply {
        let b = Array(bytes)
        guard b.count >= headerSize else { return .unsupported }
        let length = Int(read32(b, 0))
        let type = read16(b, 4)
        guard length >= headerSize, length <= b.count else { return .unsupported }
        if read32(b, 8) != sequence { return .otherSequence }
        switch type {
        case sockDiagByFamily:
            guard length >= uidOffset + 4 else { return .unsupported }
            return .owner(read32(b, uidOffset))
        case nlmsgError:
            guard length >= headerSize + 4 else { return .unsupported }
            let error = Int32(bitPattern: read32(b, headerSize))
            // ENOENT: no such socket. Anything else (EINVAL, EOPNOTSUPP, EPERM…): the lookup is not usable.
            return -error == ENOENT ? .notFound : .unsupported
        case nlmsgDone:
            return .notFound
        default:
            return .unsupported
        }
    }

    private static func padded16(_ address: [UInt8]) -> [UInt8] {
        address + [UInt8](repeating: 0, count: 16 - address.count)
    }

    private static func append16(_ out: inout [UInt8], _ value: UInt16) {
        withUnsafeBytes(of: value) { out.append(contentsOf: $0) }
    }

    private static func append32(_ out: inout [UInt8], _ value: UInt32) {
        withUnsafeBytes(of: value) { out.append(contentsOf: $0) }
    }

    static func read16(_ b: [UInt8], _ offset: Int) -> UInt16 {
        b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }

    static func read32(_ b: [UInt8], _ offset: Int) -> UInt32 {
        b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }
}

/// `/proc/net/tcp` and `/proc/net/tcp6`: one socket per line, `local_address rem_address` as hex `ADDR:PORT`
/// (the address as the 32-bit words of its network-order bytes, printed in host order; the port as a number),
/// then the state and the owner uid in the eighth column.
enum ProcNetTCP {
    /// The uid column of the line whose local and remote addresses are `local` and `remote`.
    static func owner(in table: [UInt8], local: InetEndpoint, remote: InetEndpoint) -> UInt32? {
        let localText = Array(hex(local).utf8)
        let remoteText = Array(hex(remote).utf8)
        for line in table.split(separator: UInt8(ascii: "\n")).dropFirst() {
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count > 7, fields[1].elementsEqual(localText), fields[2].elementsEqual(remoteText) else {
                continue
            }
            return UInt32(String(decoding: fields[7], as: UTF8.self))
        }
        return nil
    }

    /// `0100007F:1F41` for 127.0.0.1:8001 on a little-endian machine.
    static func hex(_ endpoint: InetEndpoint) -> String {
        var text = ""
        let bytes = endpoint.address
        for word in stride(from: 0, to: bytes.count, by: 4) {
            let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: word, as: UInt32.self) }
            text += hexDigits(UInt64(value), width: 8)
        }
        return text + ":" + hexDigits(UInt64(endpoint.port), width: 4)
    }

    private static func hexDigits(_ value: UInt64, width: Int) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var v = value
        for i in stride(from: width - 1, through: 0, by: -1) {
            out[i] = digits[Int(v & 0xf)]
            v >>= 4
        }
        return String(decoding: out, as: UTF8.self)
    }
}
