import Foundation
import StandInServer
import Testing

/// A stand-in apiserver (in-process, SwiftNIO) plus a `proxyd` child process in front of it.
final class Harness: @unchecked Sendable {
    let standIn: StandIn
    let proxy: RunningProxy
    let directory: URL

    /// - Parameters:
    ///   - standInConfiguration: tweaks for the stand-in.
    ///   - proxyArguments: extra proxyd flags (`--kubeconfig` and `--port=0` are added unless given).
    static func start(
        standIn configure: (inout StandInConfiguration) -> Void = { _ in },
        proxyArguments: [String] = [],
        kubeconfig: ((StandIn, URL) throws -> String)? = nil,
        environment: [String: String]? = nil,
        proxyWrapper: [String] = []
    ) async throws -> Harness {
        var config = StandInConfiguration()
        configure(&config)
        let standIn = try await StandIn.start(config)
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let kubeconfigPath = try kubeconfig?(standIn, dir) ?? dir.appendingPathComponent("kubeconfig").path
        var args = proxyArguments
        if !args.contains(where: { $0.hasPrefix("--kubeconfig") }) { args += ["--kubeconfig", kubeconfigPath] }
        if !args.contains(where: { $0.hasPrefix("--port") || $0.hasPrefix("-p") || $0.hasPrefix("--unix-socket") }) {
            args += ["--port=0"]
        }
        do {
            let proxy = try await RunningProxy.start(arguments: args, environment: environment, wrapper: proxyWrapper)
            return Harness(standIn: standIn, proxy: proxy, directory: dir)
        } catch {
            try? await standIn.stop()
            throw error
        }
    }

    private init(standIn: StandIn, proxy: RunningProxy, directory: URL) {
        self.standIn = standIn
        self.proxy = proxy
        self.directory = directory
    }

    var url: String { proxy.baseURL }

    func stop() async {
        await proxy.stop()
        try? await standIn.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Writes a one-cluster, one-user kubeconfig into `dir` (the CA is `ca.crt` there, as `StandIn.writeState` writes
/// it); `user` is the user stanza in flow-style YAML, e.g. `{token: standin-token}`.
func writeKubeconfig(in dir: URL, server: String, user: String, name: String = "kubeconfig-custom") throws -> String {
    let path = dir.appendingPathComponent(name).path
    try """
        apiVersion: v1
        kind: Config
        clusters:
        - name: s
          cluster: {server: "\(server)", certificate-authority: ca.crt}
        users:
        - name: u
          user: \(user)
        contexts:
        - name: x
          context: {cluster: s, user: u}
        current-context: x
        """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

enum TempDirectory {
    static func make() throws -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("proxyd-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Parses a JSON object body.
func jsonObject(_ data: Data) throws -> [String: Any] {
    guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw ChildError("not a JSON object: \(String(decoding: data, as: UTF8.self).prefix(300))")
    }
    return obj
}
