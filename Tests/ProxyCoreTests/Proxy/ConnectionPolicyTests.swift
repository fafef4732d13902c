import Glibc
import Testing
@testable import ProxyCore

/// Issue 12: `--accept-uids`, `--read-only`, the `--max-connections` default and the start-up exposure warning, as
/// values (the sockets are in AcceptUIDsTests and ConnectionLimitTests, end to end).
@Suite struct ConnectionPolicyTests {
    @Test func parsesAcceptUIDs() {
        #expect(AcceptedUIDs.parse("*") == .anyone)
        #expect(AcceptedUIDs.parse(" * ") == .anyone)
        #expect(AcceptedUIDs.parse("1000")?.uids == [1000])
        #expect(AcceptedUIDs.parse("0, 1000,65534")?.uids == [0, 1000, 65534])
        #expect(AcceptedUIDs.parse("4294967295")?.uids == [UInt32.max])
        for bad in ["", ",", "1000,", "-1", "root", "1000,*", "4294967296", "+5", "1 000"] {
            #expect(AcceptedUIDs.parse(bad) == nil, "\(bad)")
        }
        #expect(AcceptedUIDs.parse("65534,0")?.description == "0,65534")
        #expect(AcceptedUIDs.anyone.description == "*")
    }

    @Test func defaultIsOwnerAndRoot() {
        let uids = AcceptedUIDs.ownerAndRoot
        #expect(uids.accepts(geteuid()))
        #expect(uids.accepts(0))
        #expect(!uids.accepts(65534) || geteuid() == 65534)
        #expect(!uids.acceptsOtherUsers)
        #expect(AcceptedUIDs.parse("65534")!.acceptsOtherUsers || geteuid() == 65534)
        #expect(AcceptedUIDs.anyone.acceptsOtherUsers)
    }

    func policy(_ uids: AcceptedUIDs = .ownerAndRoot, readOnly: Bool = false) -> ConnectionPolicy {
        ConnectionPolicy(acceptUIDs: uids, maxConnections: 10, timeouts: ClientTimeouts(), readOnly: readOnly)
    }

    @Test func refusalsNameThePeerAndTheFlag() throws {
        let p = policy(AcceptedUIDs(uids: [0, 1000]))
        #expect(p.refusal(for: .uid(1000), loopbackPeer: true) == nil)
        let refused = try #require(p.refusal(for: .uid(65534), loopbackPeer: true))
        #expect(refused.response.status == 403)
        let body = String(decoding: refused.response.body, as: UTF8.self)
        #expect(body.containsText("uid 65534"))
        #expect(body.containsText("--accept-uids"))
        #expect(body.containsText("\"kind\":\"Status\""))
        #expect(body.containsText("\"reason\":\"Forbidden\""))
        // A loopback peer whose socket cannot be found is refused; a remote one (non-loopback listener) is served.
        #expect(p.refusal(for: .notLocal, loopbackPeer: true)?.response.status == 403)
        #expect(p.refusal(for: .notLocal, loopbackPeer: false) == nil)
        #expect(p.refusal(for: .unknown("no netlink"), loopbackPeer: false)?.response.status == 403)
        #expect(policy(.anyone).refusal(for: .uid(12345), loopbackPeer: true) == nil)
    }

    @Test func readOnlyLetsOnlySafeMethodsThrough() throws {
        let p = policy(readOnly: true)
        for method in ["GET", "HEAD", "OPTIONS"] {
            #expect(p.readOnlyRefusal(method: method, isUpgrade: false) == nil)
        }
        for method in ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "get", "PROPFIND"] {
            let refusal = try #require(p.readOnlyRefusal(method: method, isUpgrade: false))
            #expect(refusal.status == 405)
            #expect(refusal.headers.first("allow") == "GET, HEAD, OPTIONS")
            #expect(String(decoding: refusal.body, as: UTF8.self).containsText("--read-only"))
        }
        // A WebSocket exec or watch is a GET with an upgrade.
        #expect(p.readOnlyRefusal(method: "GET", isUpgrade: true)?.status == 403)
        #expect(policy().readOnlyRefusal(method: "POST", isUpgrade: true) == nil)
    }

    @Test func maxConnectionsDefaultLeavesADescriptorPerUpstream() {
        #expect(ConnectionPolicy.defaultMaxConnections(fileLimit: 1024) == 480)
        #expect(ConnectionPolicy.defaultMaxConnections(fileLimit: 524_288) == 262_112)
        #expect(ConnectionPolicy.defaultMaxConnections(fileLimit: 100) == 25)
        #expect(ConnectionPolicy.defaultMaxConnections(fileLimit: 2) == 1)
    }

    @Test func connectionLimitCountsSlots() {
        let limit = ConnectionLimit(maximum: 2)
        #expect(limit.tryAcquire())
        #expect(limit.tryAcquire())
        #expect(!limit.tryAcquire())
        limit.release()
        #expect(limit.tryAcquire())
        #expect(limit.count == 2)
    }

    @Test func exposureWarning() throws {
        #expect(ListenerExposure.warning(for: [.v4(host: "127.0.0.1", port: 8001)]) == nil)
        #expect(ListenerExposure.warning(for: [.v4(host: "127.0.0.2", port: 8001), .v6(host: "::1", port: 1)]) == nil)
        #expect(ListenerExposure.warning(for: [.unix(path: "/run/p.sock")]) == nil)
        let warning = try #require(ListenerExposure.warning(for: [.v6(host: "::", port: 8001)]))
        #expect(warning.containsText("[::]:8001"))
        #expect(warning.containsText("anyone who can reach it"))
        #expect(ListenerExposure.warning(for: [.v4(host: "192.168.1.5", port: 8001)]) != nil)
    }
}
