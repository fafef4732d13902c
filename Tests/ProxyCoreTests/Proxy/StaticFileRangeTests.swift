import Foundation
import Testing

@testable import ProxyCore

/// `--www` byte ranges and conditional requests, table-driven from Go's `net/http` `parseRange` and
/// `checkPreconditions` behaviour.
@Suite struct StaticFileRangeTests {
    @Test(arguments: [
        // header, size, expected ranges as (start, length) or an error
        ("bytes=0-4", 10, "0+5"),
        ("bytes=5-", 10, "5+5"),
        ("bytes=-3", 10, "7+3"),
        ("bytes=-30", 10, "0+10"),
        ("bytes=8-20", 10, "8+2"),
        ("bytes=0-0,-1", 10, "0+1 9+1"),
        ("bytes= 1-2 , 4-5 ", 10, "1+2 4+2"),
        ("bytes=0-1,,3-4", 10, "0+2 3+2"),
        ("bytes=10-", 10, "invalid range: failed to overlap"),
        ("bytes=10-20,0-1", 10, "0+2"),
        ("bytes=0-", 0, "invalid range: failed to overlap"),
        ("bytes=5-4", 10, "invalid range"),
        ("bytes=-", 10, "invalid range"),
        ("bytes=a-1", 10, "invalid range"),
        ("bytes=1", 10, "invalid range"),
        ("items=0-1", 10, "invalid range"),
        ("bytes=", 10, ""),
    ])
    func rangeParsing(header: String, size: Int, expected: String) {
        switch ByteRange.parse(header, size: size) {
        case .success(let ranges):
            #expect(ranges.map { "\($0.start)+\($0.length)" }.joined(separator: " ") == expected)
        case .failure(let error):
            #expect(error.rawValue == expected)
        }
    }

    static let modified = 1_700_000_000  // Tue, 14 Nov 2023 22:13:20 GMT
    static let same = "Tue, 14 Nov 2023 22:13:20 GMT"
    static let earlier = "Tue, 14 Nov 2023 22:13:19 GMT"
    static let later = "Tue, 14 Nov 2023 22:13:21 GMT"

    @Test(arguments: [
        ("GET", [String: String](), StaticFiles.Precondition.proceed(honourRange: true)),
        ("GET", ["If-Modified-Since": same], .notModified),
        ("GET", ["If-Modified-Since": later], .notModified),
        ("GET", ["If-Modified-Since": earlier], .proceed(honourRange: true)),
        ("HEAD", ["If-Modified-Since": same], .notModified),
        ("POST", ["If-Modified-Since": same], .proceed(honourRange: true)),
        ("GET", ["If-Modified-Since": "garbage"], .proceed(honourRange: true)),
        ("GET", ["If-Unmodified-Since": earlier], .preconditionFailed),
        ("GET", ["If-Unmodified-Since": same], .proceed(honourRange: true)),
        ("GET", ["If-Match": "\"abc\""], .preconditionFailed),
        ("GET", ["If-Match": "*"], .proceed(honourRange: true)),
        ("GET", ["If-None-Match": "*"], .notModified),
        ("PUT", ["If-None-Match": "*"], .preconditionFailed),
        // If-None-Match present: If-Modified-Since is not consulted.
        ("GET", ["If-None-Match": "\"abc\"", "If-Modified-Since": same], .proceed(honourRange: true)),
        ("GET", ["Range": "bytes=0-1", "If-Range": same], .proceed(honourRange: true)),
        ("GET", ["Range": "bytes=0-1", "If-Range": earlier], .proceed(honourRange: false)),
        ("GET", ["Range": "bytes=0-1", "If-Range": "\"etag\""], .proceed(honourRange: false)),
    ])
    func conditionalRequests(method: String, headers: [String: String], expected: StaticFiles.Precondition) {
        let h = HTTPHeaders(headers.map { ($0.key, $0.value) })
        #expect(StaticFiles.preconditions(method: method, request: h, modified: Self.modified) == expected)
    }

    @Test func httpDatesInAllThreeFormats() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == 784_111_777)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 25:49:37 GMT") == nil)
        #expect(HTTPDate.parse("yesterday") == nil)
        #expect(HTTPDate.format(Self.modified) == Self.same)
    }

    @Test func rangesReadOnlyTheRequestedBytes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proxyd-www-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("0123456789".utf8).write(to: dir.appendingPathComponent("digits.txt"))
        let files = StaticFiles(directory: dir.path, prefix: "/static/")

        let whole = files.respond(path: "/static/digits.txt", rawQuery: nil)
        #expect(whole.status == 200)
        #expect(whole.body == Array("0123456789".utf8))
        #expect(whole.headers.first("accept-ranges") == "bytes")
        let lastModified = try #require(whole.headers.first("last-modified"))

        let one = files.respond(path: "/static/digits.txt", rawQuery: nil, headers: HTTPHeaders([("Range", "bytes=2-4")]))
        #expect(one.status == 206)
        #expect(one.body == Array("234".utf8))
        #expect(one.headers.first("content-range") == "bytes 2-4/10")

        let two = files.respond(path: "/static/digits.txt", rawQuery: nil, headers: HTTPHeaders([("Range", "bytes=0-0,-2")]))
        #expect(two.status == 206)
        let type = try #require(two.headers.first("content-type"))
        #expect(type.hasPrefix("multipart/byteranges; boundary="))
        let boundary = String(type.dropFirst("multipart/byteranges; boundary=".count))
        let text = String(decoding: two.body, as: UTF8.self)
        #expect(text == "--\(boundary)\r\nContent-Range: bytes 0-0/10\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n0"
            + "\r\n--\(boundary)\r\nContent-Range: bytes 8-9/10\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n89"
            + "\r\n--\(boundary)--\r\n")

        let none = files.respond(path: "/static/digits.txt", rawQuery: nil, headers: HTTPHeaders([("Range", "bytes=50-")]))
        #expect(none.status == 416)
        #expect(none.headers.first("content-range") == "bytes */10")
        #expect(none.body == Array("invalid range: failed to overlap\n".utf8))

        // More bytes asked for than the file has: the Range is ignored (Go).
        let greedy = files.respond(
            path: "/static/digits.txt", rawQuery: nil, headers: HTTPHeaders([("Range", "bytes=0-9,0-9")]))
        #expect(greedy.status == 200 && greedy.body.count == 10)

        let notModified = files.respond(
            path: "/static/digits.txt", rawQuery: nil, headers: HTTPHeaders([("If-Modified-Since", lastModified)]))
        #expect(notModified.status == 304 && notModified.body.isEmpty)
        #expect(notModified.headers.first("last-modified") == lastModified)
    }
}
