import Foundation
import StandInServer
import Testing

/// Process lifecycle and kubectl-compatible command-line forms, through the built binary.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LifecycleTests {
    @Test func sigtermDrainsInFlightRequestsThenExits() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/slow?delayMs=300&chunks=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _ = client.read(until: "chunk 1/3")
        h.proxy.child.terminate()
        // The in-flight response still completes...
        let rest = client.read(until: "0\r\n\r\n")
        #expect(rest.contains("chunk 3/3"))
        // ...and then the process exits cleanly.
        #expect(try await h.proxy.child.waitForExit() == 0)
        try? await h.standIn.stop()
    }

    @Test func unixSocketIsPrivateAndRemovedOnExit() async throws {
        let dir = try TempDirectory.make()
        let socketPath = dir.appendingPathComponent("proxyd.sock").path
        let h = try await Harness.start(proxyArguments: ["--unix-socket=\(socketPath)"])
        #expect(h.proxy.address == socketPath)
        let attributes = try FileManager.default.attributesOfItem(atPath: socketPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        let r = try await Tool.curl(["--unix-socket", socketPath, "-o", "/dev/null", "-w", "%{http_code}", "http://localhost/api"])
        #expect(r.text == "200")
        h.proxy.child.terminate()
        #expect(try await h.proxy.child.waitForExit() == 0)
        #expect(!FileManager.default.fileExists(atPath: socketPath))
        try? await h.standIn.stop()
    }

    @Test func kubectlStyleBooleanAndEmptyValuesAreAccepted() async throws {
        // --reject-paths= (empty) relaxes the exec rule, --disable-filter=false keeps the filter, -v3 is a level.
        let h = try await Harness.start(proxyArguments: ["--reject-paths=", "--disable-filter=false", "-v3"])
        let exec = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api/v1/namespaces/default/pods/p/exec"])
        #expect(exec.text == "404")  // reached the stand-in, which has no such object
        let evil = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: evil.example", "\(h.url)/api"])
        #expect(evil.text == "403")
        await h.stop()
        let open = try await Harness.start(proxyArguments: ["--disable-filter=true"])
        let any = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: evil.example", "\(open.url)/api"])
        #expect(any.text == "200")
        #expect(open.proxy.child.stderr.contains("Request filter disabled"))
        await open.stop()
    }

    @Test func accessLogWritesOneLinePerRequest() async throws {
        let h = try await Harness.start(proxyArguments: ["--access-log"])
        _ = try await Tool.curl(["-o", "/dev/null", "\(h.url)/api?probe=1"])
        _ = try await Tool.curl(["-o", "/dev/null", "\(h.url)/api/v1/namespaces/default/pods/x/exec"])
        try await Task.sleep(for: .milliseconds(200))
        let log = h.proxy.child.stderr
        #expect(log.contains("\"GET /api?probe=1\" 200"))
        #expect(log.contains("/exec\" 403"))
        #expect(!log.contains("standin-token"))
        await h.stop()
    }

    @Test func allAddressesListenOnBothStacks() async throws {
        let h = try await Harness.start(proxyArguments: ["--address=0.0.0.0"])
        #expect(h.proxy.address.hasPrefix("[::]:"))
        for host in ["127.0.0.1", "[::1]"] {
            let r = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: localhost", "http://\(host):\(h.proxy.port)/api"])
            #expect(r.text == "200")
        }
        await h.stop()
    }

    @Test func execPluginWithoutOutputIsReportedClearly() async throws {
        let h = try await Harness.start()  // only for a server URL and CA
        let path = h.directory.appendingPathComponent("exec-config").path
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: c
              cluster: {server: "\(h.standIn.url)", certificate-authority: "\(h.directory.path)/ca.crt"}
            users:
            - name: u
              user:
                exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/true, interactiveMode: Never}
            contexts:
            - name: x
              context: {cluster: c, user: u}
            current-context: x
            """.write(toFile: path, atomically: true, encoding: .utf8)
        // proxyd serves anyway (a plugin may work later); /bin/true prints no ExecCredential, and each request
        // is told so.
        let proxy = try await RunningProxy.start(arguments: ["--kubeconfig", path, "--port=0"])
        let answer = try await Tool.curl(["\(proxy.baseURL)/api"])
        #expect(answer.text.contains("getting credentials: decoding stdout: invalid JSON"))
        #expect(proxy.child.stderr.contains("getting credentials: decoding stdout: invalid JSON"))
        await proxy.stop()
        await h.stop()
    }
}

/// sd_notify: READY=1 once listening, WATCHDOG=1 while the loops answer, STOPPING=1 on SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SystemdNotifyTests {
    @Test func notifiesReadyWatchdogAndStopping() async throws {
        let dir = try TempDirectory.make()
        let path = dir.appendingPathComponent("notify.sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String {
            var buf = [UInt8](repeating: 0, count: 256)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        }
        let standIn = try await StandIn.start(StandInConfiguration())
        try standIn.writeState(to: dir.path)
        let child = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", dir.appendingPathComponent("kubeconfig").path, "--port=0"],
            environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"])
        var seen: [String] = []
        for _ in 0..<4 { seen.append(receive()) }
        #expect(seen.first == "READY=1")
        #expect(seen.dropFirst().contains("WATCHDOG=1"))
        child.terminate()
        var stopping = false
        for _ in 0..<10 where !stopping { stopping = receive() == "STOPPING=1" }
        #expect(stopping)
        #expect(try await child.waitForExit() == 0)
        try? await standIn.stop()
    }
}
