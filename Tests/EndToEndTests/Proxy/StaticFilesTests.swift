import Foundation
import StandInServer
import Testing

/// `--www` / `--www-prefix`, with kubectl's behaviour: not filtered, index.html, listings, 301s, 404s.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct StaticFilesTests {
    @Test func servesFilesBesideTheAPI() async throws {
        let www = try TempDirectory.make()
        try "<h1>hi</h1>".write(to: www.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: www.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try "body{}".write(to: www.appendingPathComponent("sub/app.css"), atomically: true, encoding: .utf8)
        let secret = www.deletingLastPathComponent().appendingPathComponent("secret-\(UUID().uuidString).txt")
        try "TOP-SECRET-CONTENT".write(to: secret, atomically: true, encoding: .utf8)
        let h = try await Harness.start(proxyArguments: ["--www=\(www.path)"])

        let index = try await Tool.curl(["-i", "\(h.url)/static/"])
        #expect(index.text.hasPrefix("HTTP/1.1 200"))
        #expect(index.text.contains("text/html"))
        #expect(index.text.hasSuffix("<h1>hi</h1>"))
        let css = try await Tool.curl(["-i", "-H", "Host: evil.example", "\(h.url)/static/sub/app.css"])  // not filtered
        #expect(css.text.hasPrefix("HTTP/1.1 200"))
        #expect(css.text.contains("Content-Type: text/css"))
        let listing = try await Tool.curl(["\(h.url)/static/sub/"])
        #expect(listing.text.contains("<a href=\"app.css\">app.css</a>"))
        let bare = try await Tool.curl(["-i", "\(h.url)/static"])
        #expect(bare.text.hasPrefix("HTTP/1.1 301"))
        #expect(bare.text.contains("Location: /static/"))
        let dir = try await Tool.curl(["-i", "\(h.url)/static/sub"])
        #expect(dir.text.contains("Location: sub/"))
        let missing = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/static/nope.txt"])
        #expect(missing.text == "404")
        // No way out of the folder.
        for path in ["/static/../\(secret.lastPathComponent)", "/static/%2e%2e/\(secret.lastPathComponent)"] {
            let r = try await Tool.curl(["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "\(h.url)\(path)"])
            #expect(r.text == "301" || r.text == "404", "\(path): \(r.text)")
            let body = try await Tool.curl(["--path-as-is", "-L", "\(h.url)\(path)"])
            #expect(!body.text.contains("TOP-SECRET-CONTENT"))
        }
        // The API still answers beside it.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.stop()
    }

    /// curl's range and time-condition options against `--www`, as Go's file server answers them.
    @Test func rangesAndConditionalRequests() async throws {
        let www = try TempDirectory.make()
        try "0123456789".write(to: www.appendingPathComponent("digits.txt"), atomically: true, encoding: .utf8)
        let h = try await Harness.start(proxyArguments: ["--www=\(www.path)"])
        let url = "\(h.url)/static/digits.txt"

        let part = try await Tool.curl(["-i", "-r", "2-4", url])
        #expect(part.text.hasPrefix("HTTP/1.1 206"))
        #expect(part.text.contains("Content-Range: bytes 2-4/10"))
        #expect(part.text.hasSuffix("\r\n\r\n234"))
        // A later request on the same connection still works (framing intact after a 206).
        let both = try await Tool.curl(["-r", "-3", url, "--next", "-r", "0-0", url])
        #expect(both.text == "7890")

        let head = try await Tool.curl(["-sI", url])
        #expect(head.text.contains("Accept-Ranges: bytes"))
        let lastModified = try #require(head.text.split(separator: "\r\n").first { $0.hasPrefix("Last-Modified: ") })
            .dropFirst("Last-Modified: ".count)
        let cached = try await Tool.curl(["-i", "-H", "If-Modified-Since: \(lastModified)", url])
        #expect(cached.text.hasPrefix("HTTP/1.1 304"))
        #expect(!cached.text.contains("Content-Length"))
        #expect(cached.text.hasSuffix("\r\n\r\n"))
        let unsatisfiable = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-r", "50-60", url])
        #expect(unsatisfiable.text == "416")
        await h.stop()
    }

    @Test func conflictingPrefixesAreRefusedClearly() async throws {
        let h = try await Harness.start()
        let child = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--port=0",
                        "--www=/tmp", "--www-prefix=/"])
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains("--www-prefix (/) and --api-prefix (/) must differ"))
        await h.stop()
    }
}
