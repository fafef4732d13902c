import Foundation
import Logging
import Testing

@testable import ProxyCore

@Suite struct JSONLogHandlerTests {
    @Test func oneObjectPerLineWithTypedFields() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000.25)
        let line = JSONLogHandler.line(
            date: date, level: .info, message: "request \"quoted\"\nnext", label: "proxyd", source: "ProxyCore",
            metadata: [
                "status": .stringConvertible(200), "duration_us": .stringConvertible(UInt64(1234)),
                "conn.id": "7", "msg": "cannot replace the message", "nested": ["a": .array(["x", .stringConvertible(true)])],
            ])
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasSuffix("}\n"))
        #expect(text.filter { $0 == "\n" }.count == 1)
        #expect(text.hasPrefix("{\"ts\":1700000000.250000,\"level\":\"info\",\"msg\":\"request \\\"quoted\\\"\\nnext\""))
        let object = try #require(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["status"] as? Int == 200)
        #expect(object["duration_us"] as? Int == 1234)
        #expect(object["conn.id"] as? String == "7")
        #expect(object["msg"] as? String == "request \"quoted\"\nnext")
        #expect(object["logger"] as? String == "proxyd")
        #expect(object["source"] as? String == "ProxyCore")
        #expect(text.contains(",\"nested\":{\"a\":[\"x\",true]},"))
    }

    @Test func handlerMergesMetadataAndWritesThroughItsOutput() throws {
        let lines = LineBox()
        var handler = JSONLogHandler(label: "t") { lines.append($0) }
        handler.logLevel = .debug
        handler[metadataKey: "fixed"] = "1"
        let logger = Logger(label: "t") { _ in handler }
        logger.warning("hello", metadata: ["k": "v"])
        let object = try #require(JSONSerialization.jsonObject(with: Data(lines.all.first ?? [])) as? [String: Any])
        #expect(object["level"] as? String == "warning")
        #expect(object["fixed"] as? String == "1")
        #expect(object["k"] as? String == "v")
        #expect(object["ts"] is Double)
    }
}

final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [[UInt8]] = []
    func append(_ line: [UInt8]) { lock.withLock { lines.append(line) } }
    var all: [[UInt8]] { lock.withLock { lines } }
}
