import Foundation

/// Runs a command to completion, capturing output. Only loopback URLs are ever passed by the tests.
struct CommandResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

enum Tool {
    static func path(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    @discardableResult
    static func run(
        _ name: String, _ arguments: [String], input: Data? = nil, environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> CommandResult {
        guard let exe = path(name) else { throw ChildError("\(name) is not installed (scripts/install-deps installs it)") }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "KUBECONFIG")
        env["HOME"] = NSTemporaryDirectory()  // no user kubeconfig or kubectl cache leaks in
        for (key, value) in environment { env[key] = value }
        let process = try Subprocess(executable: exe, arguments: arguments, environment: env, input: input == nil ? .null : .pipe)
        let out = process.standardOutput, err = process.standardError
        let outBox = DataBox(), errBox = DataBox()
        out.readabilityHandler = { h in outBox.append(h.availableData) }
        err.readabilityHandler = { h in errBox.append(h.availableData) }
        if let input, let stdin = process.standardInput {
            stdin.write(input)
            try? stdin.close()
        }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                process.terminate()
                throw ChildError("\(name) \(arguments) timed out")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(20))
        out.readabilityHandler = nil
        err.readabilityHandler = nil
        outBox.append(out.readDataToEndOfFile())
        errBox.append(err.readDataToEndOfFile())
        return CommandResult(status: process.terminationStatus, stdout: outBox.data, stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    /// curl with sane defaults for tests: silent, show errors, no proxy from the environment.
    static func curl(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
        try await run("curl", ["-sS", "--noproxy", "*", "--max-time", "\(timeout.components.seconds)"] + arguments, timeout: timeout + .seconds(5))
    }
}

final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storage = Data()
    func append(_ d: Data) { lock.withLock { storage.append(d) } }
    var data: Data { lock.withLock { storage } }
}
