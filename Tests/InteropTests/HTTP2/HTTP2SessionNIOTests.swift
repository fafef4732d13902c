import Crypto
import Foundation
@testable import ProxyCore
import StandInServer
import Testing

// Our nghttp2 `HTTP2Session` over our OpenSSL `TLSEngine`, against the stand-in apiserver (SwiftNIO + NIOSSL +
// NIOHTTP2): an independent HTTP/2 and TLS implementation. Each test starts its own stand-in, so its stats belong
// to that test alone. Every wait is bounded by a deadline; `.serialized` keeps the blocking pumps from competing
// for the two cores.

@Suite(.serialized, .timeLimit(.minutes(2)))
struct HTTP2SessionNIOTests {
    private static let wait: Duration = .seconds(15)

    private func withStandIn(
        _ configure: (inout StandInConfiguration) -> Void = { _ in },
        _ body: (StandIn) async throws -> Void
    ) async throws {
        var configuration = StandInConfiguration()
        configure(&configuration)
        let standIn = try await StandIn.start(configuration)
        do {
            try await body(standIn)
        } catch {
            try? await standIn.stop()
            throw error
        }
        try await standIn.stop()
    }

    private func connect(_ standIn: StandIn, streamWindow: Int32 = 1 << 20) throws -> H2Driver {
        try H2Driver(port: standIn.port, caPEM: standIn.caPEM, streamWindow: streamWindow)
    }

    /// Pumps until `stream` closed; records an issue if it did not within `wait`.
    private func pumpUntilClosed(_ driver: H2Driver, _ streams: [Int32], wait: Duration = Self.wait,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let done = try driver.pump(for: wait) { streams.allSatisfy { driver.recorder.closed[$0] != nil } }
        #expect(done, "streams \(streams) did not close within \(wait)", sourceLocation: sourceLocation)
    }

    private func expectHealthy(_ driver: H2Driver, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(driver.tlsFailure == nil, sourceLocation: sourceLocation)
        #expect(driver.sessionError == nil, sourceLocation: sourceLocation)
        #expect(!driver.transportClosed, sourceLocation: sourceLocation)
    }

    // MARK: 1

    @Test func getAPIOverTLSNegotiatesH2AndReturnsAPIVersionsWithACleanStreamEnd() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            #expect(driver.negotiatedALPN == "h2")

            let id = try driver.get("/api")
            try pumpUntilClosed(driver, [id])

            let recorder = driver.recorder
            let head = try #require(recorder.heads[id])
            #expect(head.status == 200)
            #expect(head.headers.first("content-type") == "application/json")
            #expect(head.headers.first("x-standin-protocol") == "h2")
            let json = try recorder.json(id)
            #expect(json["kind"] as? String == "APIVersions")
            #expect(json["versions"] as? [String] == ["v1"])
            #expect(recorder.log[id] == ["head", "data", "end", "close"])
            #expect(recorder.closed[id] == HTTP2ErrorCode.noError)
            #expect(driver.session.activeStreamCount == 0)
            #expect(driver.session.canOpenStream)
            expectHealthy(driver)

            let stats = standIn.stats
            #expect(stats.h2Connections == 1)
            #expect(stats.h1Connections == 0)
            #expect(stats.requestsByPath["/api"] == 1)
        }
    }

    // MARK: 2

    @Test func hundredConcurrentGETsShareOneConnectionAndEachResponseReachesItsOwnStream() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            // All 100 are submitted before a single byte is pumped: they are in flight together.
            var paths: [Int32: String] = [:]
            for index in 0..<100 {
                #expect(driver.session.canOpenStream, "stream \(index) refused")
                let path = "/standin/echo/request-\(index)"
                paths[try driver.get(path)] = path
            }
            #expect(paths.count == 100)
            #expect(driver.session.activeStreamCount == 100)

            try pumpUntilClosed(driver, Array(paths.keys))

            let recorder = driver.recorder
            for (id, path) in paths.sorted(by: { $0.key < $1.key }) {
                #expect(recorder.heads[id]?.status == 200, "stream \(id)")
                #expect(recorder.closed[id] == HTTP2ErrorCode.noError, "stream \(id)")
                #expect(recorder.ended.contains(id), "stream \(id)")
                let json = try recorder.json(id)
                #expect(json["path"] as? String == path, "stream \(id) got another stream's response")
                #expect(json["method"] as? String == "GET")
                #expect(json["protocol"] as? String == "h2")
            }
            #expect(driver.session.activeStreamCount == 0)
            expectHealthy(driver)

            let stats = standIn.stats
            #expect(stats.tcpConnectionsAccepted == 1)
            #expect(stats.h2Connections == 1)
            #expect(stats.streamsOpened >= 100)
        }
    }

    // MARK: 3

    @Test func eightMiBRequestBodyStreamedInChunksArrivesWithExactLengthAndSHA256() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            let total = 8 << 20
            let chunkSize = 64 << 10
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            let body = (0..<total).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            let expectedDigest = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()

            let id = try driver.request("POST", "/standin/echo/upload", hasBody: true,
                                        headers: [("content-type", "application/octet-stream")])
            // Feed the body as the upstream's window allows: at most 256 KiB waiting in the session at any time.
            var offset = 0
            var peakBuffered = 0
            let deadline = ContinuousClock.now + .seconds(60)
            while offset < total, driver.recorder.closed[id] == nil, ContinuousClock.now < deadline {
                let buffered = driver.session.bufferedBodyBytes(stream: id)
                peakBuffered = max(peakBuffered, buffered)
                if buffered < 256 << 10 {
                    let end = min(offset + chunkSize, total)
                    driver.session.appendBody(Array(body[offset..<end]), stream: id)
                    offset = end
                    if offset == total { driver.session.endBody(stream: id) }
                    try driver.pumpOnce(waitingUpTo: 0)
                } else {
                    try driver.pumpOnce(waitingUpTo: 10)
                }
            }
            #expect(offset == total, "only \(offset) of \(total) bytes were handed to the session")
            try pumpUntilClosed(driver, [id], wait: .seconds(60))

            let recorder = driver.recorder
            #expect(recorder.heads[id]?.status == 200)
            #expect(recorder.closed[id] == HTTP2ErrorCode.noError)
            let json = try recorder.json(id)
            #expect(json["method"] as? String == "POST")
            #expect(json["protocol"] as? String == "h2")
            #expect(json["bodyLength"] as? Int == total)
            #expect(json["bodySHA256"] as? String == expectedDigest)
            #expect(driver.session.bufferedBodyBytes(stream: id) == 0)
            expectHealthy(driver)
        }
    }

    // MARK: 4

    @Test func unconsumedResponseDataStopsNIOAtTheStreamWindowAndConsumingReleasesAllOf4MiB() async throws {
        try await withStandIn { standIn in
            let window: Int32 = 64 << 10
            let driver = try connect(standIn, streamWindow: window)
            let recorder = driver.recorder
            recorder.autoConsume = false
            let total = 4 << 20
            let id = try driver.get("/standin/large?bytes=\(total)")

            // Nothing is consumed: NIO may send one stream window and must then wait.
            try driver.pump(for: .milliseconds(500))
            let held = recorder.bodies[id]?.count ?? 0
            #expect(recorder.heads[id]?.status == 200)
            #expect(held > 0, "no DATA at all within 500 ms")
            #expect(held <= Int(window) + 16_384, "\(held) bytes arrived against a \(window)-byte stream window")
            #expect(driver.trace.dataBytes(stream: id) == held, "the session must deliver what was on the wire")
            #expect(recorder.closed[id] == nil)
            // Still nothing more after another quiet period.
            try driver.pump(for: .milliseconds(200))
            #expect(recorder.bodies[id]?.count ?? 0 == held)

            // Give back what arrived, then consume as data is delivered: the rest must flow.
            recorder.autoConsume = true
            driver.session.consume(stream: id, bytes: held)
            try pumpUntilClosed(driver, [id], wait: .seconds(60))

            #expect(recorder.closed[id] == HTTP2ErrorCode.noError)
            #expect(recorder.ended.contains(id))
            #expect(recorder.bodies[id]?.count == total)
            let json = try recorder.json(id)
            #expect(json["kind"] as? String == "ConfigMapList")
            expectHealthy(driver)
        }
    }

    // MARK: 5

    @Test func rstStreamFromNIOClosesOnlyThatStreamWithInternalErrorAndTheSessionServesTheNextGET() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            let recorder = driver.recorder

            let afterHeaders = try driver.get("/standin/reset")
            try pumpUntilClosed(driver, [afterHeaders])
            #expect(recorder.closed[afterHeaders] == HTTP2ErrorCode.internalError)
            #expect(recorder.heads[afterHeaders]?.status == 200)
            #expect(!recorder.ended.contains(afterHeaders))
            // The stand-in writes a partial body before the reset, but NIOHTTP2 sends RST_STREAM past its
            // flow-control buffer and drops the stream's buffered DATA when the stream closes, so the body may not
            // reach the wire. What must hold: the session delivers exactly the DATA that was on the wire, and the
            // RST_STREAM was the stream's last frame.
            let wire = driver.trace.frames(stream: afterHeaders)
            #expect(wire.first?.type == H2FrameTrace.headers)
            #expect(wire.last?.type == H2FrameTrace.rstStream)
            let wireData = driver.trace.dataBytes(stream: afterHeaders)
            #expect(recorder.bodies[afterHeaders]?.count ?? 0 == wireData)
            if wireData > 0 {
                #expect(recorder.body(afterHeaders) == #"{"partial":"#)
                #expect(recorder.log[afterHeaders] == ["head", "data", "close"])
            } else {
                #expect(recorder.log[afterHeaders] == ["head", "close"])
            }

            let beforeHeaders = try driver.get("/standin/reset?before=headers")
            try pumpUntilClosed(driver, [beforeHeaders])
            #expect(recorder.closed[beforeHeaders] == HTTP2ErrorCode.internalError)
            #expect(recorder.heads[beforeHeaders] == nil)
            #expect(recorder.log[beforeHeaders] == ["close"])

            #expect(driver.session.canOpenStream)
            let next = try driver.get("/api")
            try pumpUntilClosed(driver, [next])
            #expect(recorder.heads[next]?.status == 200)
            #expect(recorder.closed[next] == HTTP2ErrorCode.noError)
            #expect(try recorder.json(next)["kind"] as? String == "APIVersions")
            #expect(driver.session.activeStreamCount == 0)
            expectHealthy(driver)
            #expect(standIn.stats.tcpConnectionsAccepted == 1)
        }
    }

    // MARK: 6

    @Test func goAwayFromNIOStopsNewStreamsButTheInFlightWatchKeepsDeliveringEvents() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            let recorder = driver.recorder
            let watch = try driver.get("/api/v1/namespaces/default/pods?watch=1")
            let watching = try driver.pump(for: Self.wait) { recorder.heads[watch] != nil }
            #expect(watching)
            #expect(recorder.heads[watch]?.status == 200)
            #expect(driver.session.canOpenStream)

            await standIn.sendGoAway()
            let goAwaySeen = try driver.pump(for: Self.wait) { !recorder.goAways.isEmpty }
            #expect(goAwaySeen)
            #expect(recorder.goAways.count == 1)
            #expect(recorder.goAways.first?.errorCode == HTTP2ErrorCode.noError)
            #expect(recorder.goAways.first?.lastStreamID == watch)
            #expect(driver.session.lastGoAwayStreamID == watch)
            #expect(!driver.session.canOpenStream)
            #expect(driver.session.isGoingAway)
            #expect(throws: HTTP2Error.self) { try driver.get("/api") }

            try standIn.createPod(name: "after-goaway")
            let eventSeen = try driver.pump(for: Self.wait) { recorder.body(watch).contains(#""after-goaway""#) }
            #expect(eventSeen, "watch body so far: \(recorder.body(watch).suffix(300))")
            #expect(recorder.body(watch).contains(#""type":"ADDED""#))
            #expect(recorder.closed[watch] == nil)
            expectHealthy(driver)
            #expect(standIn.stats.goAwaysSent == 1)
        }
    }

    // MARK: 7

    @Test func pingIsAnsweredByNIOAndTheAckReachesTheDelegate() async throws {
        try await withStandIn { standIn in
            let driver = try connect(standIn)
            #expect(driver.recorder.pingAcks == 0)
            driver.session.ping()
            let acked = try driver.pump(for: Self.wait) { driver.recorder.pingAcks > 0 }
            #expect(acked)
            #expect(driver.recorder.pingAcks == 1)
            expectHealthy(driver)
        }
    }

    // MARK: 8

    @Test func remoteMaxConcurrentStreamsIsTheStandInsSettingAndLimitsCanOpenStream() async throws {
        try await withStandIn({ $0.maxConcurrentStreams = 7 }) { standIn in
            let driver = try connect(standIn)
            #expect(driver.session.remoteMaxConcurrentStreams == 7)

            var ids: [Int32] = []
            while driver.session.canOpenStream, ids.count < 20 {
                ids.append(try driver.get("/standin/slow?delayMs=50&chunks=2"))
            }
            #expect(ids.count == 7)
            try pumpUntilClosed(driver, ids)
            for id in ids {
                #expect(driver.recorder.heads[id]?.status == 200, "stream \(id)")
                #expect(driver.recorder.closed[id] == HTTP2ErrorCode.noError, "stream \(id)")
                #expect(driver.recorder.body(id).hasSuffix("chunk 2/2\n"), "stream \(id)")
            }
            #expect(driver.session.canOpenStream)
            expectHealthy(driver)
        }
    }
}
