import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Headless Chromium (Debian's `chromium`) driven through the DevTools protocol: one browser process per test,
/// a fresh profile, pages in their own browser contexts (own cookie jars), JavaScript evaluated in the page.
///
/// The browser is kept to loopback: no proxy from the environment, background networking and component updates
/// off, and a host-resolver rule that maps every name but `localhost`, `*.localhost` and the loopback literals to
/// "not found". Chromium resolves `*.localhost` to loopback itself (RFC 6761).
final class Chromium: @unchecked Sendable {
    /// The browser binary, if installed (scripts/install-deps installs Debian's `chromium`).
    static let executable: String? = Tool.path("chromium") ?? Tool.path("chromium-browser")
    static var isInstalled: Bool { executable != nil }
    static let missingMessage = "chromium is not installed (scripts/install-deps installs it: apt-get install chromium)"

    /// Flags for every headless run (scripts/screenshot-index repeats them).
    static func arguments(userDataDirectory: String) -> [String] {
        var arguments = [
            "--headless",
            "--disable-gpu",
            "--user-data-dir=\(userDataDirectory)",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
            "--window-size=1000,700",
        ]
        // Chromium's sandbox refuses to run as root (CI and this machine run tests as root).
        if getuid() == 0 { arguments.append("--no-sandbox") }
        return arguments
    }

    let child: ChildProcess
    private let profile: URL
    private let devTools: DevToolsConnection

    private init(child: ChildProcess, profile: URL, devTools: DevToolsConnection) {
        self.child = child
        self.profile = profile
        self.devTools = devTools
    }

    /// Starts the browser and connects to its DevTools endpoint (`--remote-debugging-port=0`; the port is read from
    /// the profile's `DevToolsActivePort` file).
    static func launch() async throws -> Chromium {
        guard let executable else { throw ChildError(missingMessage) }
        let profile = try TempDirectory.make()
        let child = try ChildProcess(
            executable: URL(fileURLWithPath: executable),
            arguments: arguments(userDataDirectory: profile.path) + ["--remote-debugging-port=0", "about:blank"])
        let portFile = profile.appendingPathComponent("DevToolsActivePort")
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if let text = try? String(contentsOf: portFile, encoding: .utf8) {
                let lines = text.split(separator: "\n")
                if lines.count >= 2, let port = Int(lines[0]) {
                    let devTools = try DevToolsConnection(port: port, path: String(lines[1]))
                    return Chromium(child: child, profile: profile, devTools: devTools)
                }
            }
            guard child.process.isRunning, ContinuousClock.now < deadline else {
                child.kill9()
                try? FileManager.default.removeItem(at: profile)
                throw ChildError("chromium did not open its DevTools port; stderr: \(child.stderr.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// A new tab in a browser context of its own (cookies and storage not shared with other pages).
    func newPage() throws -> BrowserPage {
        let context = try devTools.call("Target.createBrowserContext")
        let contextID = try (context["browserContextId"] as? String).orThrow("no browserContextId")
        let target = try devTools.call("Target.createTarget", ["url": "about:blank", "browserContextId": contextID])
        let targetID = try (target["targetId"] as? String).orThrow("no targetId")
        let attached = try devTools.call("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        let session = try (attached["sessionId"] as? String).orThrow("no sessionId")
        return BrowserPage(devTools: devTools, session: session)
    }

    /// Closes the browser (Browser.close, then SIGTERM/SIGKILL by PID if it lingers) and removes the profile.
    func close() async {
        _ = try? devTools.call("Browser.close")
        devTools.close()
        if (try? await child.waitForExit(timeout: .seconds(10))) == nil {
            child.terminate()
            if (try? await child.waitForExit(timeout: .seconds(5))) == nil { child.kill9() }
        }
        try? FileManager.default.removeItem(at: profile)
    }
}

/// One tab, addressed through its flattened DevTools session.
struct BrowserPage {
    let devTools: DevToolsConnection
    let session: String

    /// Navigates and waits until the document has loaded (readyState `complete`).
    func open(_ url: String, timeout: Duration = .seconds(30)) async throws {
        let result = try devTools.call("Page.navigate", ["url": url], session: session)
        if let error = result["errorText"] as? String { throw ChildError("navigating to \(url): \(error)") }
        try await waitUntil("document.readyState === 'complete' && location.href !== 'about:blank'", timeout: timeout)
    }

    /// Evaluates JavaScript in the page (promises awaited) and returns its value as JSON gives it.
    func evaluate(_ expression: String) throws -> Any? {
        let result = try devTools.call(
            "Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true], session: session)
        if let exception = result["exceptionDetails"] as? [String: Any] {
            let description = ((exception["exception"] as? [String: Any])?["description"] as? String) ?? "\(exception)"
            throw ChildError("JavaScript threw: \(description)")
        }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// Polls `expression` until it is `true` (in-page errors, e.g. during a navigation, count as not yet).
    func waitUntil(_ expression: String, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? evaluate(expression)) as? Bool == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChildError("timed out waiting for `\(expression)`; page: \((try? evaluate("location.href + ' ' + document.body.innerText")) ?? "?")")
    }

    /// The text of the element with this id ("" if there is none).
    func text(_ id: String) throws -> String {
        try evaluate("(document.getElementById('\(id)') || {}).textContent || ''") as? String ?? ""
    }

    func attribute(_ id: String, _ name: String) throws -> String {
        try evaluate("(document.getElementById('\(id)') || {getAttribute: () => ''}).getAttribute('\(name)') || ''") as? String ?? ""
    }

    var location: String { (try? evaluate("location.href") as? String) ?? "" }
}

/// A DevTools protocol client over one WebSocket (RFC 6455, client side: masked text frames out, plain frames in),
/// blocking and one call at a time; events between responses are skipped.
final class DevToolsConnection: @unchecked Sendable {
    private let socket: RawClient
    private var pending: [UInt8] = []
    private var nextID = 1
    private let lock = NSLock()

    init(port: Int, path: String) throws {
        socket = try RawClient(port: port)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        socket.send(
            "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n")
        while true {
            if let end = find([13, 10, 13, 10], in: pending) {
                let head = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeFirst(end + 4)
                guard head.hasPrefix("HTTP/1.1 101") else { throw ChildError("DevTools handshake failed: \(head)") }
                return
            }
            let bytes = socket.readSome()
            if bytes.isEmpty { throw ChildError("DevTools closed the connection during the handshake") }
            pending += bytes
        }
    }

    func close() {
        socket.close()
    }

    /// Sends one command and returns its `result` (or throws its `error`).
    @discardableResult
    func call(_ method: String, _ params: [String: Any] = [:], session: String? = nil) throws -> [String: Any] {
        try lock.withLock {
            let id = nextID
            nextID += 1
            var message: [String: Any] = ["id": id, "method": method, "params": params]
            if let session { message["sessionId"] = session }
            try sendText(try JSONSerialization.data(withJSONObject: message))
            while true {
                let reply = try receiveMessage()
                guard let json = try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
                    json["id"] as? Int == id
                else { continue }  // an event, or a reply to an earlier call that timed out
                if let error = json["error"] as? [String: Any] {
                    throw ChildError("DevTools \(method): \(error["message"] ?? error)")
                }
                return json["result"] as? [String: Any] ?? [:]
            }
        }
    }

    private func sendText(_ payload: Data) throws {
        var frame: [UInt8] = [0x81]
        let count = payload.count
        if count < 126 {
            frame.append(0x80 | UInt8(count))
        } else if count < 65536 {
            frame += [0x80 | 126, UInt8(count >> 8), UInt8(count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8((count >> ($0 * 8)) & 0xFF) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        socket.send(frame)
    }

    /// One whole text/binary message (continuation frames joined); answers pings; throws on close or timeout.
    private func receiveMessage() throws -> [UInt8] {
        var message: [UInt8] = []
        while true {
            let header = try take(2)
            let opcode = header[0] & 0x0F
            let fin = header[0] & 0x80 != 0
            var length = Int(header[1] & 0x7F)
            if length == 126 {
                length = try take(2).reduce(0) { $0 << 8 | Int($1) }
            } else if length == 127 {
                length = try take(8).reduce(0) { $0 << 8 | Int($1) }
            }
            let masked = header[1] & 0x80 != 0
            let mask = masked ? try take(4) : []
            var payload = try take(length)
            if masked { payload = payload.enumerated().map { $0.element ^ mask[$0.offset % 4] } }
            switch opcode {
            case 0x8:
                throw ChildError("DevTools closed the connection")
            case 0x9:
                socket.send([0x8A, 0x80 | UInt8(payload.count)] + [0, 0, 0, 0] + payload)
            case 0xA:
                continue
            default:
                message += payload
                if fin { return message }
            }
        }
    }

    private func take(_ count: Int) throws -> [UInt8] {
        while pending.count < count {
            let bytes = socket.readSome()
            if bytes.isEmpty { throw ChildError("DevTools connection closed or timed out") }
            pending += bytes
        }
        let out = Array(pending[..<count])
        pending.removeFirst(count)
        return out
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}

extension Optional {
    fileprivate func orThrow(_ message: String) throws -> Wrapped {
        guard let value = self else { throw ChildError("DevTools: \(message)") }
        return value
    }
}
