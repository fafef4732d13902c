import Foundation
import Testing

/// Paths of the package and its built products.
enum BuildProducts {
    static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// The `proxyd` binary: `$PROXYD_BIN`, else the one next to the test bundle (`swift build` puts both in
    /// the same folder).
    static var proxyd: URL {
        if let env = ProcessInfo.processInfo.environment["PROXYD_BIN"] { return URL(fileURLWithPath: env) }
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("proxyd"),
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("proxyd"),
            packageRoot.appendingPathComponent(".build/debug/proxyd"),
        ]
        for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c }
        return candidates.last!
    }

    /// The `standin-apiserver` binary, built next to `proxyd` (for tests that kill the upstream process).
    static var standIn: URL {
        proxyd.deletingLastPathComponent().appendingPathComponent("standin-apiserver")
    }
}

extension BuildProducts {
    /// The stand-in apiserver executable, built next to proxyd (for tests that kill and restart it by PID).
    static var standInServer: URL {
        proxyd.deletingLastPathComponent().appendingPathComponent("standin-apiserver")
    }
}

/// A child process started by a test; stopped by PID (only processes we started).
final class ChildProcess: @unchecked Sendable {
    let process: Subprocess
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()

    init(executable: URL, arguments: [String], environment: [String: String]? = nil) throws {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "KUBECONFIG")
        env.removeValue(forKey: "KUBERNETES_SERVICE_HOST")
        // proxyd honours these like kubectl; a test that wants them sets them.
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"] {
            env.removeValue(forKey: name)
        }
        for (k, v) in environment ?? [:] { env[k] = v }
        process = try Subprocess(executable: executable.path, arguments: arguments, environment: env)
        process.standardOutput.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.withLock { self.stdoutData.append(d) }
        }
        process.standardError.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.withLock { self.stderrData.append(d) }
        }
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { lock.withLock { String(decoding: stdoutData, as: UTF8.self) } }
    var stderr: String { lock.withLock { String(decoding: stderrData, as: UTF8.self) } }

    /// Waits until stdout contains `text` or the process exits.
    func waitForStdout(containing text: String, timeout: Duration = .seconds(20)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let out = stdout
            if out.contains(text) { return out }
            if !process.isRunning {
                try await Task.sleep(for: .milliseconds(50))
                throw ChildError("process exited (\(process.terminationStatus)) before printing \"\(text)\"; stdout: \(stdout) stderr: \(stderr)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ChildError("timed out waiting for \"\(text)\"; stdout: \(stdout) stderr: \(stderr)")
    }

    /// Waits for the process to exit; returns its status.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { throw ChildError("process \(pid) did not exit in time") }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(50))  // let the pipes drain
        return process.terminationStatus
    }

    func terminate() {
        if process.isRunning { kill(pid, SIGTERM) }
    }

    func kill9() {
        if process.isRunning { kill(pid, SIGKILL) }
    }

    deinit {
        process.standardOutput.readabilityHandler = nil
        process.standardError.readabilityHandler = nil
        if process.isRunning { kill(pid, SIGKILL) }
    }

    /// Open descriptors of the process, from /proc.
    var openFDCount: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// Resident set size in KiB, from /proc/PID/status.
    var rssKiB: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.filter(\.isNumber)
            return Int(digits) ?? -1
        }
        return -1
    }
}

struct ChildError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A running proxyd in front of some kubeconfig.
final class RunningProxy: @unchecked Sendable {
    let child: ChildProcess
    let address: String  // as announced, e.g. "127.0.0.1:41234"
    let port: Int

    /// - Parameter wrapper: a command that runs proxyd (e.g. `["prlimit", "--nofile=64:64"]`); the proxyd path and
    ///   `arguments` are appended to it.
    static func start(arguments: [String], environment: [String: String]? = nil, wrapper: [String] = []) async throws -> RunningProxy {
        let child: ChildProcess
        if let tool = wrapper.first {
            guard let path = Tool.path(tool) else { throw ChildError("\(tool) is not installed") }
            child = try ChildProcess(
                executable: URL(fileURLWithPath: path),
                arguments: Array(wrapper.dropFirst()) + [BuildProducts.proxyd.path] + arguments, environment: environment)
        } else {
            child = try ChildProcess(executable: BuildProducts.proxyd, arguments: arguments, environment: environment)
        }
        let out = try await child.waitForStdout(containing: "Starting to serve on ")
        let line = out.split(separator: "\n").first { $0.hasPrefix("Starting to serve on ") }!
        let address = String(line.dropFirst("Starting to serve on ".count))
        let port = Int(address.split(separator: ":").last!) ?? 0
        return RunningProxy(child: child, address: address, port: port)
    }

    private init(child: ChildProcess, address: String, port: Int) {
        self.child = child
        self.address = address
        self.port = port
    }

    var baseURL: String { "http://\(address)" }

    /// `http://host:port` of the first admin listener (`Serving metrics on …`, `Serving health checks on …`).
    var adminURL: String? { adminURL(serving: nil) }

    /// `http://host:port` of the admin listener whose announcement mentions `what` (`metrics`, `health`).
    func adminURL(serving what: String?) -> String? {
        for line in child.stdout.split(separator: "\n") where line.hasPrefix("Serving ") {
            if let what, !line.contains(what) { continue }
            guard let on = line.range(of: " on ", options: .backwards) else { continue }
            return "http://" + line[on.upperBound...]
        }
        return nil
    }

    func stop() async {
        child.terminate()
        _ = try? await child.waitForExit()
    }
}
