import Foundation
import Testing

@testable import ProxyCore

/// Reading apiserver addresses from `kubernetes` EndpointSlices, as the apiservers write them.
@Suite struct EndpointSliceTests {
    static func decode(_ json: String) throws -> EndpointSliceList {
        try JSONDecoder().decode(EndpointSliceList.self, from: Data(json.utf8))
    }

    /// Shaped like a real cluster's (kubeadm, three control-plane nodes).
    static let list = """
        {"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"4242"},
         "items":[{"metadata":{"name":"kubernetes","namespace":"default","resourceVersion":"311",
           "labels":{"kubernetes.io/service-name":"kubernetes","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
          "addressType":"IPv4",
          "endpoints":[{"addresses":["10.0.0.11"],"conditions":{"ready":true}},
                       {"addresses":["10.0.0.12"],"conditions":{"ready":false}},
                       {"addresses":["10.0.0.13"]}],
          "ports":[{"name":"https","port":6443,"protocol":"TCP"}]}]}
        """

    @Test func readyEndpointsAtTheHTTPSPort() throws {
        let list = try Self.decode(Self.list)
        #expect(list.metadata?.resourceVersion == "4242")
        #expect(list.items.count == 1)
        // Not ready: left out; no conditions: ready (the API's rule for unknown).
        #expect(list.items[0].serverAddresses == [
            ServerAddress(host: "10.0.0.11", port: 6443), ServerAddress(host: "10.0.0.13", port: 6443),
        ])
    }

    @Test func ipv6AddressesAreBracketedInAuthorities() throws {
        let list = try Self.decode("""
            {"items":[{"metadata":{"name":"kubernetes-v6"},"addressType":"IPv6",
              "endpoints":[{"addresses":["fd00::11"]}],"ports":[{"name":"https","port":443}]}]}
            """)
        let addresses = list.items[0].serverAddresses
        #expect(addresses == [ServerAddress(host: "fd00::11", port: 443)])
        #expect(addresses[0].authority == "[fd00::11]:443")
    }

    @Test func portChoiceAndGarbage() throws {
        // Only one TCP port, unnamed: used. Several without "https": none. Junk addresses: skipped.
        let list = try Self.decode("""
            {"items":[
              {"metadata":{"name":"a"},"endpoints":[{"addresses":["10.0.0.1","bad/host","user@10.0.0.2",""]}],
               "ports":[{"port":8443}]},
              {"metadata":{"name":"b"},"endpoints":[{"addresses":["10.0.0.3"]}],
               "ports":[{"name":"x","port":1},{"name":"y","port":2}]},
              {"metadata":{"name":"c"},"endpoints":[{"addresses":["10.0.0.4"]}],
               "ports":[{"name":"https","port":70000}]},
              {"metadata":{"name":"d"},"endpoints":[{"addresses":["10.0.0.5"]}]}]}
            """)
        #expect(list.items.map(\.serverAddresses) == [[ServerAddress(host: "10.0.0.1", port: 8443)], [], [], []])
    }

    @Test func watchEventsUpdateTheMergedList() throws {
        var servers = DiscoveredServers()
        servers.replaceAll(try Self.decode(Self.list).items)
        let line = """
            {"type":"MODIFIED","object":{"metadata":{"name":"kubernetes","resourceVersion":"312"},
             "endpoints":[{"addresses":["10.0.0.12"],"conditions":{"ready":true}}],"ports":[{"name":"https","port":6443}]}}
            """
        guard case .upsert(let slice)? = EndpointSliceWatchEvent.parse(Array(line.utf8)) else {
            Issue.record("not parsed as an update")
            return
        }
        #expect(slice.metadata.resourceVersion == "312")
        servers.upsert(slice)
        let added = """
            {"type":"ADDED","object":{"metadata":{"name":"extra"},"endpoints":[{"addresses":["10.0.1.1","10.0.0.12"]}],
             "ports":[{"name":"https","port":6443}]}}
            """
        guard case .upsert(let extra)? = EndpointSliceWatchEvent.parse(Array(added.utf8)) else {
            Issue.record("ADDED not parsed")
            return
        }
        servers.upsert(extra)
        // Ordered by slice name, duplicates once.
        #expect(servers.addresses == [ServerAddress(host: "10.0.1.1", port: 6443), ServerAddress(host: "10.0.0.12", port: 6443)])
        let deleted = #"{"type":"DELETED","object":{"metadata":{"name":"extra"}}}"#
        guard case .deleted(let gone)? = EndpointSliceWatchEvent.parse(Array(deleted.utf8)) else {
            Issue.record("DELETED not parsed")
            return
        }
        servers.delete(gone)
        #expect(servers.addresses == [ServerAddress(host: "10.0.0.12", port: 6443)])
    }

    @Test func bookmarksErrorsAndNoise() {
        let bookmark = #"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"900"}}}"#
        #expect(EndpointSliceWatchEvent.parse(Array(bookmark.utf8)) == .bookmark(resourceVersion: "900"))
        let gone = #"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#
        #expect(EndpointSliceWatchEvent.parse(Array(gone.utf8)) == .error(code: 410, message: "too old resource version: 1 (5)"))
        #expect(EndpointSliceWatchEvent.parse(Array("not json".utf8)) == nil)
        #expect(EndpointSliceWatchEvent.parse(Array(#"{"type":"SOMETHING"}"#.utf8)) == nil)
    }
}

/// `--failover-server` values against the cluster's server.
@Suite struct FailoverConfigurationTests {
    static let primary = UpstreamTarget(
        scheme: "https", host: "k8s.example.com", port: 443, authority: "k8s.example.com",
        tls: TLSConfiguration(caPEM: Array("ca".utf8)), credentials: StaticCredentials(bearerToken: "t"))

    @Test func everyServerIsTheClusterAtAnotherAddressVerifiedWithThePrimaryName() throws {
        let targets = try FailoverConfiguration.targets(
            primary: Self.primary, failoverURLs: ["https://10.0.0.2:6443", "10.0.0.3:6443", "https://[fd00::4]:6443"])
        #expect(targets.map(\.authority) == ["k8s.example.com", "10.0.0.2:6443", "10.0.0.3:6443", "[fd00::4]:6443"])
        #expect(targets.map(\.host) == ["k8s.example.com", "10.0.0.2", "10.0.0.3", "fd00::4"])
        for target in targets {
            #expect(target.tls.serverName == "k8s.example.com")
            #expect(target.tls.caPEM == Array("ca".utf8))
            #expect(target.credentials == Self.primary.credentials)
        }
        var named = Self.primary
        named.tls.serverName = "kubernetes.default.svc"
        let withName = try FailoverConfiguration.targets(primary: named, failoverURLs: ["https://10.0.0.2:6443"])
        #expect(withName.allSatisfy { $0.tls.serverName == "kubernetes.default.svc" })
    }

    @Test func duplicatesOfTheSameAddressAreDropped() throws {
        let targets = try FailoverConfiguration.targets(
            primary: Self.primary, failoverURLs: ["https://k8s.example.com", "https://10.0.0.2:6443", "https://10.0.0.2:6443/"])
        #expect(targets.map(\.authority) == ["k8s.example.com", "10.0.0.2:6443"])
    }

    @Test(arguments: [
        ("http://10.0.0.2:6443", "the scheme must be the cluster server's (https)"),
        ("https://10.0.0.2:99999", "invalid port"),
        ("https://10.0.0.2:6443/other", "the path must be empty or the cluster server's ()"),
        ("ftp://x", "unsupported scheme \"ftp\" (want https or http)"),
        ("https://user:pw@10.0.0.2", "must not contain user information"),
    ])
    func unusableValuesAreNamed(value: String, reason: String) {
        #expect(throws: FailoverError(value: value, reason: reason)) {
            try FailoverConfiguration.targets(primary: Self.primary, failoverURLs: [value])
        }
        #expect("\(FailoverError(value: value, reason: reason))" == "invalid --failover-server \"\(value)\": \(reason)")
    }
}
