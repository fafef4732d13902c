import Foundation
import Testing

/// A client connection keeps its request parser only while a request is being received (issue 11, memory per
/// watch): it lets the parser go when a watch starts and, between keep-alive requests, in the loop's once-a-second
/// sweep, and makes a new one when bytes come. The built proxyd in front of the stand-in, over raw sockets.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RequestParserLifetimeTests {
    /// Keep-alive: a request, a pause in which the sweep lets the idle connection's parser go, a head sent in many
    /// small writes, then two pipelined requests.
    @Test func keepAliveRequestsAfterTheParserWasLetGo() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/echo/one HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(client.read(until: "/standin/echo/one").hasPrefix("HTTP/1.1 200"))
        try await Task.sleep(for: .milliseconds(2500))  // at least two sweeps
        try await sendInPieces(client, "GET /standin/echo/two HTTP/1.1\r\nHost: localhost\r\n\r\n", size: 3)
        #expect(client.read(until: "/standin/echo/two").hasPrefix("HTTP/1.1 200"))
        client.send("GET /standin/echo/three HTTP/1.1\r\nHost: localhost\r\n\r\n"
            + "GET /standin/echo/four HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        let rest = client.readToEnd()
        #expect(rest.components(separatedBy: "HTTP/1.1 200").count - 1 == 2, "\(rest.prefix(300))")
        let three = try #require(rest.range(of: "/standin/echo/three"))
        let four = try #require(rest.range(of: "/standin/echo/four"))
        #expect(three.lowerBound < four.lowerBound)
        await h.stop()
    }

    /// A request pipelined behind a watch (parsed with it, in one read) and one sent in pieces while the watch runs
    /// (after its parser was let go) are both answered, in order, once the watch ends.
    @Test func requestsPipelinedBehindAWatchAreAnsweredAfterIt() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods?watch=1&timeoutSeconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            + "GET /standin/echo/after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(client.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        try await Task.sleep(for: .milliseconds(1200))
        try await sendInPieces(
            client, "GET /standin/echo/late HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", size: 7)
        let rest = client.readToEnd()  // the watch ends after 3 s (timeoutSeconds), then the proxy closes after "late"
        let watchEnd = try #require(rest.range(of: "0\r\n\r\n"))
        let after = try #require(rest.range(of: "/standin/echo/after"))
        let late = try #require(rest.range(of: "/standin/echo/late"))
        #expect(watchEnd.lowerBound < after.lowerBound)
        #expect(after.lowerBound < late.lowerBound)
        #expect(rest.components(separatedBy: "HTTP/1.1 200").count - 1 == 2, "\(rest.prefix(300))")
        await h.stop()
    }

    /// Sends `text` in writes of `size` bytes, a few milliseconds apart, so the proxy reads it in many pieces.
    private func sendInPieces(_ client: RawClient, _ text: String, size: Int) async throws {
        let all = Array(text.utf8)
        var start = 0
        while start < all.count {
            let end = min(start + size, all.count)
            client.send(Array(all[start..<end]))
            start = end
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
