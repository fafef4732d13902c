import Foundation
import StandInServer

extension BuildProducts {
    /// The `standin-apiserver` executable, next to `proxyd`.
    static var standin: URL {
        proxyd.deletingLastPathComponent().appendingPathComponent("standin-apiserver")
    }
}

/// A stand-in apiserver in its own process (so a test can SIGKILL it), with the CA of `caDirectory`, which all the
/// stand-ins of one test share: the apiservers of one cluster.
final class StandInProcess: @unchecked Sendable {
    let child: ChildProcess
    let port: Int
    let caDirectory: URL

    static func start(caDirectory: URL, port: Int = 0) async throws -> StandInProcess {
        let child = try ChildProcess(
            executable: BuildProducts.standin,
            arguments: ["--port", "\(port)", "--ca-dir", caDirectory.path, "--state-dir", caDirectory.path])
        let out = try await child.waitForStdout(containing: "serving on https://")
        guard let line = out.split(separator: "\n").first(where: { $0.contains("serving on https://") }),
            let bound = Int(line.split(separator: ":").last ?? "")
        else { throw ChildError("no port in \(out)") }
        return StandInProcess(child: child, port: bound, caDirectory: caDirectory)
    }

    private init(child: ChildProcess, port: Int, caDirectory: URL) {
        self.child = child
        self.port = port
        self.caDirectory = caDirectory
    }

    var url: String { "https://127.0.0.1:\(port)" }

    /// SIGKILL (this process was started by the test), then waits for it to be gone.
    func kill9() async throws {
        child.kill9()
        _ = try await child.waitForExit()
    }

    /// A new process on the same port.
    func restarted() async throws -> StandInProcess {
        try await StandInProcess.start(caDirectory: caDirectory, port: port)
    }

    func stop() async {
        child.terminate()
        _ = try? await child.waitForExit()
    }

    /// `GET /standin/stats` straight from this stand-in (not through proxyd).
    func stats() async throws -> [String: Any] {
        let r = try await Tool.curl([
            "--cacert", caDirectory.appendingPathComponent("ca.crt").path,
            "-H", "Authorization: Bearer standin-token", "\(url)/standin/stats",
        ])
        return try jsonObject(r.stdout)
    }

    func count(_ key: String) async throws -> Int {
        try await stats()[key] as? Int ?? -1
    }
}

/// Several in-process stand-ins sharing one CA (one cluster).
enum StandInCluster {
    static func start(_ count: Int, directory: URL, configure: (Int, inout StandInConfiguration) -> Void = { _, _ in })
        async throws -> [StandIn]
    {
        var standIns: [StandIn] = []
        for index in 0..<count {
            var configuration = StandInConfiguration()
            configuration.caDirectory = directory.path
            configure(index, &configuration)
            standIns.append(try await StandIn.start(configuration))
        }
        try standIns[0].writeState(to: directory.path)
        return standIns
    }
}

/// A kubeconfig for the first server with its CA (`ca.crt` in `dir`) and the stand-in token.
func writeClusterKubeconfig(in dir: URL, server: String) throws -> String {
    try writeKubeconfig(in: dir, server: server, user: "{token: standin-token}", name: "kubeconfig-cluster")
}
