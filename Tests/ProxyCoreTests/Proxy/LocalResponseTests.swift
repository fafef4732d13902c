import Foundation
import Testing

@testable import ProxyCore

/// Responses proxyd writes itself: kubectl's exact 403 and 404, ServeMux's 301, and Status JSON for upstream failures.
@Suite struct LocalResponseTests {
    static func pairs(_ h: HTTPHeaders) -> [String] { h.fields.map { "\($0.name): \($0.value)" } }

    @Test func forbiddenIsKubectls() {
        let r = LocalResponse.forbidden
        #expect(r.status == 403)
        #expect(r.body == Array("Forbidden\n".utf8))
        #expect(r.body.count == 10)
        #expect(Self.pairs(r.headers) == [
            "Content-Type: text/plain; charset=utf-8", "X-Content-Type-Options: nosniff",
        ])
    }

    @Test func notFoundIsGos() {
        let r = LocalResponse.notFound
        #expect(r.status == 404)
        #expect(String(decoding: r.body, as: UTF8.self) == "404 page not found\n")
        #expect(Self.pairs(r.headers) == [
            "Content-Type: text/plain; charset=utf-8", "X-Content-Type-Options: nosniff",
        ])
    }

    @Test(arguments: [
        ("/custom/", "<a href=\"/custom/\">Moved Permanently</a>.\n\n"),
        ("/api/v1/pods?watch=1&x='\"<>", "<a href=\"/api/v1/pods?watch=1&amp;x=&#39;&#34;&lt;&gt;\">Moved Permanently</a>.\n\n"),
    ])
    func movedPermanently(_ location: String, _ body: String) {
        let r = LocalResponse.movedPermanently(to: location)
        #expect(r.status == 301)
        #expect(Self.pairs(r.headers) == ["Location: \(location)", "Content-Type: text/html; charset=utf-8"])
        #expect(String(decoding: r.body, as: UTF8.self) == body)
    }

    static let messages: [String] = [
        "plain",
        "dial tcp 127.0.0.1:6443: connect: connection refused",
        "quote \" backslash \\ slash / tab \t newline \n cr \r",
        "controls \u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
        "unicode é € 😀 \u{2028}\u{2029}",
        "",
    ]

    @Test(arguments: messages)
    func statusIsValidJSON(_ message: String) throws {
        let r = LocalResponse.status(503, reason: "Service\"Unavailable", message: message)
        #expect(r.status == 503)
        #expect(Self.pairs(r.headers) == ["Content-Type: application/json"])
        #expect(r.body.last == UInt8(ascii: "\n"))
        let object = try JSONSerialization.jsonObject(with: Data(r.body))
        let dict = try #require(object as? [String: Any])
        #expect(Set(dict.keys) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "code"])
        #expect(dict["kind"] as? String == "Status")
        #expect(dict["apiVersion"] as? String == "v1")
        #expect((dict["metadata"] as? [String: Any])?.isEmpty == true)
        #expect(dict["status"] as? String == "Failure")
        #expect(dict["message"] as? String == message)
        #expect(dict["reason"] as? String == "Service\"Unavailable")
        #expect(dict["code"] as? Int == 503)
    }

    @Test func statusExactBytes() {
        let r = LocalResponse.status(504, reason: "Timeout", message: "a\"b")
        #expect(String(decoding: r.body, as: UTF8.self)
            == #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"a\"b","reason":"Timeout","code":504}"#
            + "\n")
    }

    struct FailureCase: Sendable, CustomTestStringConvertible {
        var failure: UpstreamFailure
        var status: Int
        var reason: String
        var message: String
        var testDescription: String { "\(failure) → \(status)" }
    }

    @Test(arguments: [
        FailureCase(failure: .unavailable("connection refused"), status: 503, reason: "ServiceUnavailable",
                    message: "proxyd: the apiserver is unavailable: connection refused"),
        FailureCase(failure: .badGateway("TLS \"handshake\" failed"), status: 502, reason: "BadGateway",
                    message: "proxyd: error talking to the apiserver: TLS \"handshake\" failed"),
        FailureCase(failure: .timeout("connect\ntimed out"), status: 504, reason: "Timeout",
                    message: "proxyd: the apiserver did not answer in time: connect\ntimed out"),
    ])
    func upstreamFailure(_ c: FailureCase) throws {
        let r = LocalResponse.upstreamFailure(c.failure)
        #expect(r.status == c.status)
        let dict = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        #expect(dict["code"] as? Int == c.status)
        #expect(dict["reason"] as? String == c.reason)
        #expect(dict["message"] as? String == c.message)
    }

    @Test func badRequest() {
        let r = LocalResponse.badRequest(status: 400, reason: "Bad Request: invalid URL escape in path")
        #expect(r.status == 400)
        #expect(String(decoding: r.body, as: UTF8.self) == "400 Bad Request: invalid URL escape in path\n")
        #expect(Self.pairs(r.headers) == ["Content-Type: text/plain; charset=utf-8", "Connection: close"])
    }

    @Test(arguments: [
        ("", #""""#), ("a", #""a""#), ("\"", #""\"""#), ("\\", #""\\""#), ("\n\r\t", #""\n\r\t""#),
        ("\u{1}\u{1f}", #""\u0001\u001f""#), ("/", #""/""#), ("é", "\"é\""),
    ])
    func jsonQuoting(_ s: String, _ quoted: String) {
        #expect(jsonQuoted(s) == quoted)
    }

    @Test func htmlEscaping() {
        #expect(htmlEscaped(#"<a href="x">&'</a>"#) == "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;")
    }

    @Test func jsonQuotingWithAndWithoutGoHTMLEscaping() {
        let text = "a<b>&\"c\\\n\u{1}é"
        #expect(jsonQuoted(text) == #""a<b>&\"c\\\n\u0001é""#)
        #expect(jsonQuoted(text, escapeHTML: true) == #""a\u003cb\u003e\u0026\"c\\\n\u0001é""#)
    }
}
