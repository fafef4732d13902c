import Logging
import Testing

@testable import ProxyCore

/// The shared server set: health transitions as snapshots, and membership from discovery.
@Suite struct APIServerSetTests {
    static let primary = UpstreamTarget(
        scheme: "https", host: "k8s.example.com", port: 6443, authority: "k8s.example.com:6443",
        tls: TLSConfiguration(caPEM: Array("ca".utf8)))

    static func makeSet(failover: [String] = ["https://10.0.0.2:6443"]) throws -> APIServerSet {
        let targets = try FailoverConfiguration.targets(primary: primary, failoverURLs: failover)
        return APIServerSet(
            configuration: FailoverConfiguration(servers: failover, discover: true), targets: targets,
            coordinator: EventLoop(label: "test.coordinator"), logger: Logger(label: "test")
        ) { HTTPHeaders() }
    }

    @Test func healthChangesAreNewSnapshotsAndRepeatsAreNot() throws {
        let set = try Self.makeSet()
        defer { set.stop() }
        let first = set.snapshot
        #expect(first.servers.map(\.url) == ["https://k8s.example.com:6443", "https://10.0.0.2:6443"])
        #expect(first.healthy == [true, true])
        let down = try #require(set.report(1, .failed("cannot connect: refused")))
        #expect(down.version > first.version)
        #expect(down.healthy == [true, false])
        // The same outage seen again, or a success while healthy: nothing new to tell the loops.
        #expect(set.report(1, .failed("cannot connect: refused")) == nil)
        #expect(set.report(0, .connected) == nil)
        #expect(set.unreachableSummary() == "no apiserver is reachable (https://k8s.example.com:6443: unhealthy; https://10.0.0.2:6443: cannot connect: refused)")
        let up = try #require(set.report(1, .connected))
        #expect(up.healthy == [true, true])
        #expect(up.version > down.version)
        #expect(set.report(7, .failed("no such server")) == nil)
    }

    @Test func discoveredServersComeAndGoConfiguredOnesStay() throws {
        let set = try Self.makeSet()
        defer { set.stop() }
        set.setDiscovered([
            ServerAddress(host: "10.0.0.2", port: 6443),  // already configured
            ServerAddress(host: "10.0.0.3", port: 6443),
            ServerAddress(host: "fd00::4", port: 6443),
        ])
        let grown = set.snapshot
        #expect(grown.servers.map(\.url) == [
            "https://k8s.example.com:6443", "https://10.0.0.2:6443", "https://10.0.0.3:6443", "https://[fd00::4]:6443",
        ])
        #expect(grown.servers.map(\.discovered) == [false, false, true, true])
        // Discovered servers are the cluster at another address: same TLS name, credentials, authority rules.
        #expect(grown.servers[3].target.host == "fd00::4")
        #expect(grown.servers[3].target.tls.serverName == "k8s.example.com")
        let idOfThird = grown.servers[2].id
        // The same list again: no new version.
        set.setDiscovered([ServerAddress(host: "10.0.0.3", port: 6443), ServerAddress(host: "fd00::4", port: 6443)])
        #expect(set.snapshot.version == grown.version)
        // One leaves; the configured ones stay even when the slices do not list them.
        set.setDiscovered([ServerAddress(host: "10.0.0.3", port: 6443)])
        let shrunk = set.snapshot
        #expect(shrunk.servers.map(\.url) == ["https://k8s.example.com:6443", "https://10.0.0.2:6443", "https://10.0.0.3:6443"])
        #expect(shrunk.servers[2].id == idOfThird)
        set.setDiscovered([])
        #expect(set.snapshot.servers.count == 2)
        // A server that comes back gets a new id (its old pool is gone).
        set.setDiscovered([ServerAddress(host: "10.0.0.3", port: 6443)])
        #expect(set.snapshot.servers[2].id != idOfThird)
    }
}
