import Foundation
import Glibc
import Testing
@testable import ProxyCore

extension EventLoopSuites {
/// Issue 12 part 1: the owner of the peer socket of an accepted connection, through netlink `inet_diag`, the
/// `/proc/net/tcp*` fallback, and `SO_PEERCRED`. (Other uids are exercised end to end with `setpriv`, in
/// AcceptUIDsTests.)
@Suite("EventLoop PeerOwnerLookup")
struct PeerOwnerLookupTests {
    /// Accepts one connection from a blocking client on `host`; returns the accepted fd, its peer and the client.
    func acceptOne(host: String) async throws -> (fd: Int32, peer: SocketAddress, client: Int32, listener: Listener) {
        let listener = try Listener.bindTCP(host: host, port: 0)
        let accepted = Recorder<Accepted>()
        listener.start(group: EventLoopGroup(count: 1)) { fd, peer, _ in
            accepted.append(Accepted(fd: fd, peer: peer, loopIndex: nil))
        }
        let address = listener.localAddress
        let client = await TestIO.blocking { TestSocket.connectBlocking(to: address) }
        _ = await TestIO.eventually { accepted.values.count == 1 }
        let first = try #require(accepted.values.first)
        return (first.fd, first.peer, client, listener)
    }

    @Test func ipv4PeerIsOurs() async throws {
        let (fd, peer, client, listener) = try await acceptOne(host: "127.0.0.1")
        defer { close(fd); close(client); listener.close() }
        let lookup = PeerOwnerLookup()
        #expect(lookup.owner(ofPeerOf: fd, peer: peer) == .uid(geteuid()))
        #expect(!lookup.usesProcFallback, "netlink sock_diag answered")
        // A second lookup reuses the netlink socket.
        #expect(lookup.owner(ofPeerOf: fd, peer: peer) == .uid(geteuid()))
    }

    @Test(.enabled(if: TestIO.ipv6LoopbackAvailable, "IPv6 loopback unavailable"))
    func ipv6PeerIsOurs() async throws {
        let (fd, peer, client, listener) = try await acceptOne(host: "::1")
        defer { close(fd); close(client); listener.close() }
        #expect(PeerOwnerLookup().owner(ofPeerOf: fd, peer: peer) == .uid(geteuid()))
    }

    /// A dual-stack listener sees an IPv4 client as `::ffff:127.0.0.1` (reported as `.v4`).
    @Test(.enabled(if: TestIO.ipv6LoopbackAvailable, "IPv6 unavailable"))
    func ipv4PeerOfADualStackListener() async throws {
        let listener = try Listener.bindTCP(host: "::", port: 0)
        let accepted = Recorder<Accepted>()
        listener.start(group: EventLoopGroup(count: 1)) { fd, peer, _ in
            accepted.append(Accepted(fd: fd, peer: peer, loopIndex: nil))
        }
        let port = try #require(listener.localAddress.port)
        let client = await TestIO.blocking { TestSocket.connectBlocking(to: .v4(host: "127.0.0.1", port: port)) }
        _ = await TestIO.eventually { accepted.values.count == 1 }
        let first = try #require(accepted.values.first)
        defer { close(first.fd); close(client); listener.close() }
        #expect(first.peer.isLoopback)
        #expect(PeerOwnerLookup().owner(ofPeerOf: first.fd, peer: first.peer) == .uid(geteuid()))
    }

    @Test func procFallbackFindsTheSameOwner() async throws {
        let (fd, peer, client, listener) = try await acceptOne(host: "127.0.0.1")
        defer { close(fd); close(client); listener.close() }
        let local = try #require(InetEndpoint(listener.localAddress))
        let remote = try #require(InetEndpoint(peer))
        #expect(PeerOwnerLookup.procOwner(client: remote, server: local) == .uid(geteuid()))
        // Swapped ends: that is proxyd's own accepted socket, not the client's; it is listed too, but the lookup
        // asks for the client's socket (local end = client address), which the swap does not name.
        let bogus = InetEndpoint(address: [127, 0, 0, 1], port: 1)
        #expect(PeerOwnerLookup.procOwner(client: bogus, server: local) == .notLocal)
    }

    @Test func aClosedPeerIsNotFound() async throws {
        let (fd, peer, client, listener) = try await acceptOne(host: "127.0.0.1")
        defer { close(fd); listener.close() }
        // Abortive close (RST): the client's socket is gone at once, no TIME_WAIT entry.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(client)
        #expect(await TestIO.eventually { PeerOwnerLookup().owner(ofPeerOf: fd, peer: peer) == .notLocal })
    }

    @Test func unixPeerCredentials() async throws {
        let (ours, peer) = TestIO.socketPair()
        defer { close(ours); close(peer) }
        #expect(PeerOwnerLookup().owner(ofPeerOf: ours, peer: .unix(path: "")) == .uid(geteuid()))
    }

    // MARK: wire formats

    @Test func netlinkRequestLayout() {
        let client = InetEndpoint(address: [127, 0, 0, 1], port: 0x1234)
        let server = InetEndpoint(address: [127, 0, 0, 2], port: 8001)
        let request = InetDiag.request(client: client, server: server, sequence: 7)
        #expect(request.count == 72)
        #expect(InetDiag.read32(request, 0) == 72)
        #expect(InetDiag.read16(request, 4) == 20)          // SOCK_DIAG_BY_FAMILY
        #expect(InetDiag.read16(request, 6) == 1)           // NLM_F_REQUEST
        #expect(InetDiag.read32(request, 8) == 7)
        #expect(request[16] == UInt8(AF_INET) && request[17] == UInt8(IPPROTO_TCP))
        #expect(Array(request[24..<28]) == [0x12, 0x34, 0x1f, 0x41])     // ports in network order
        #expect(Array(request[28..<32]) == [127, 0, 0, 1])
        #expect(Array(request[44..<48]) == [127, 0, 0, 2])
        #expect(Array(request[64..<72]) == [UInt8](repeating: 0xff, count: 8))   // no cookie
    }

    @Test func netlinkReplies() {
        func message(type: UInt16, sequence: UInt32, payload: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            withUnsafeBytes(of: UInt32(16 + payload.count)) { out += $0 }
            withUnsafeBytes(of: type) { out += $0 }
            withUnsafeBytes(of: UInt16(0)) { out += $0 }
            withUnsafeBytes(of: sequence) { out += $0 }
            withUnsafeBytes(of: UInt32(0)) { out += $0 }
            return out + payload
        }
        var diag = [UInt8](repeating: 0, count: 72)
        withUnsafeBytes(of: UInt32(65534)) { diag.replaceSubrange(64..<68, with: $0) }
        #expect(InetDiag.parseReply(message(type: 20, sequence: 3, payload: diag)[...], sequence: 3) == .owner(65534))
        #expect(InetDiag.parseReply(message(type: 20, sequence: 2, payload: diag)[...], sequence: 3) == .otherSequence)
        var enoent: [UInt8] = []
        withUnsafeBytes(of: Int32(-ENOENT)) { enoent += $0 }
        #expect(InetDiag.parseReply(message(type: 2, sequence: 3, payload: enoent + [UInt8](repeating: 0, count: 16))[...], sequence: 3) == .notFound)
        var einval: [UInt8] = []
        withUnsafeBytes(of: Int32(-EINVAL)) { einval += $0 }
        #expect(InetDiag.parseReply(message(type: 2, sequence: 3, payload: einval + [UInt8](repeating: 0, count: 16))[...], sequence: 3) == .unsupported)
        #expect(InetDiag.parseReply([1, 2, 3][...], sequence: 3) == .unsupported)
        #expect(InetDiag.parseReply(message(type: 20, sequence: 3, payload: [0, 0])[...], sequence: 3) == .unsupported)
    }

    @Test func procNetTCPLines() {
        let table = Array("""
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
               1: 0100007F:D431 0100007F:1F41 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0000000000000000 20 4 30 10 -1

            """.utf8)
        let client = InetEndpoint(address: [127, 0, 0, 1], port: 0xD431)
        let server = InetEndpoint(address: [127, 0, 0, 1], port: 8001)
        #expect(ProcNetTCP.hex(server) == "0100007F:1F41")
        #expect(ProcNetTCP.owner(in: table, local: client, remote: server) == 65534)
        #expect(ProcNetTCP.owner(in: table, local: server, remote: client) == nil)
        let v6 = InetEndpoint(address: [UInt8](repeating: 0, count: 15) + [1], port: 8001)
        #expect(ProcNetTCP.hex(v6) == "00000000000000000000000001000000:1F41")
        #expect(client.mappedToIPv6.address == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1])
    }
}
}
