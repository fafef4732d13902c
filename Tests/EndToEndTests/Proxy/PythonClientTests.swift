import Foundation
import StandInServer
import Testing

/// The official Python client (`kubernetes` from PyPI, installed by scripts/install-deps) pointed at proxyd: a third,
/// independent HTTP client stack (urllib3) for typed reads, a create and a watch.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PythonClientTests {
    static let script = #"""
        import sys
        from kubernetes import client, watch

        cfg = client.Configuration()
        cfg.host = sys.argv[1]
        api = client.CoreV1Api(client.ApiClient(cfg))
        print("versions", ",".join(client.CoreApi(client.ApiClient(cfg)).get_api_versions().versions), flush=True)
        pods = api.list_namespaced_pod("default")
        print("pods", sorted(p.metadata.name for p in pods.items), flush=True)
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-python"), data={"key": "value"})
        api.create_namespaced_config_map("default", cm)
        print("configmap", api.read_namespaced_config_map("from-python", "default").data["key"], flush=True)
        w = watch.Watch()
        for event in w.stream(api.list_namespaced_pod, "default", timeout_seconds=30):
            print("event", event["type"], event["object"].metadata.name, flush=True)
            if event["object"].metadata.name == "late":
                w.stop()
        print("done", flush=True)
        """#

    @Test func listCreateAndWatchThroughProxyd() async throws {
        let h = try await Harness.start()
        try h.standIn.createPod(name: "early")
        let scriptFile = h.directory.appendingPathComponent("client.py")
        try Self.script.write(to: scriptFile, atomically: true, encoding: .utf8)
        let python = try ChildProcess(
            executable: URL(fileURLWithPath: Tool.path("python3")!), arguments: [scriptFile.path, h.url],
            environment: ["HOME": h.directory.path, "NO_PROXY": "*"])
        // The watch lists "early" first; "late" is created only once that event came through proxyd.
        _ = try await python.waitForStdout(containing: "event ADDED early")
        try h.standIn.createPod(name: "late")
        let out = try await python.waitForStdout(containing: "done")
        #expect(try await python.waitForExit() == 0, "\(python.stderr)")
        #expect(out.contains("versions v1"))
        #expect(out.contains("pods ['early']"))
        #expect(out.contains("configmap value"))
        #expect(out.contains("event ADDED late"))
        // The configmap really reached the apiserver.
        let e = try await Tool.curl(["\(h.url)/api/v1/namespaces/default/configmaps/from-python"])
        #expect(e.text.contains("\"key\":\"value\""))
        await h.stop()
    }
}
