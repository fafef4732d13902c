import Foundation
import StandInServer
import Testing

/// What the stand-in offers for tests of several apiservers: a shared CA, the `kubernetes` EndpointSlices, RBAC-like
/// refusals and a `/readyz` that can fail. Checked with curl against the stand-ins directly.
@Suite("StandIn cluster")
struct StandInClusterTests {
    static func curl(_ dir: URL, _ url: String, _ extra: [String] = []) async throws -> (code: String, body: String) {
        let r = try await Tool.curl(
            ["--cacert", dir.appendingPathComponent("ca.crt").path, "-H", "Authorization: Bearer standin-token",
             "-w", "\n%{http_code}"] + extra + [url])
        let text = r.text
        let newline = text.lastIndex(of: "\n") ?? text.startIndex
        return (String(text[text.index(after: newline)...]), String(text[..<newline]))
    }

    @Test func standInsWithOneCADirectoryAreOneCluster() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(3, directory: dir)
        #expect(Set(standIns.map(\.caPEM)).count == 1)
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("standin-ca.pem").path))
        for standIn in standIns {
            #expect(try await Self.curl(dir, standIn.url + "/version").code == "200")
        }
        // A stand-in of its own is not part of it.
        let stranger = try await StandIn.start(StandInConfiguration())
        #expect(stranger.caPEM != standIns[0].caPEM)
        try? await stranger.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    @Test func endpointSlicesAreListedByLabelAndRefusedWhenForbidden() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir) { index, configuration in
            if index == 1 { configuration.forbidden = [ForbiddenRule(verb: "list", resource: "endpointslices", namespace: "default")] }
        }
        try standIns[0].setAPIServerEndpointSlice(name: "kubernetes", addresses: ["10.0.0.1", "10.0.0.2"], port: 6443)
        let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
        let selected = try await Self.curl(dir, standIns[0].url + path + "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes")
        #expect(selected.code == "200")
        let list = try jsonObject(Data(selected.body.utf8))
        #expect(list["kind"] as? String == "EndpointSliceList")
        let items = list["items"] as? [[String: Any]] ?? []
        #expect(items.count == 1)
        #expect((items.first?["endpoints"] as? [[String: Any]])?.count == 2)
        let other = try await Self.curl(dir, standIns[0].url + path + "?labelSelector=kubernetes.io%2Fservice-name%3Dother")
        #expect((try jsonObject(Data(other.body.utf8))["items"] as? [Any])?.isEmpty == true)
        let forbidden = try await Self.curl(dir, standIns[1].url + path)
        #expect(forbidden.code == "403")
        #expect(forbidden.body.contains("endpointslices.discovery.k8s.io is forbidden"))
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    @Test func readyzCanFail() async throws {
        let dir = try TempDirectory.make()
        let standIn = try await StandInCluster.start(1, directory: dir)[0]
        #expect(try await Self.curl(dir, standIn.url + "/readyz").code == "200")
        standIn.setReady(false)
        let unready = try await Self.curl(dir, standIn.url + "/readyz")
        #expect(unready.code == "500")
        #expect(unready.body.contains("readyz check failed"))
        #expect(try await Self.curl(dir, standIn.url + "/version").code == "200")
        standIn.setReady(true)
        #expect(try await Self.curl(dir, standIn.url + "/readyz").code == "200")
        try? await standIn.stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
