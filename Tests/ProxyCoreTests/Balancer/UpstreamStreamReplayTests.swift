import Testing

@testable import ProxyCore

/// What an `UpstreamStream` keeps so that the balancer can send it again, and where its failures go.
@Suite struct UpstreamStreamReplayTests {
    final class Recorder: UpstreamResponseHandler {
        var failures: [UpstreamFailure] = []
        var heads: [Int] = []
        func upstreamDidReceiveHead(status: Int, headers: HTTPHeaders) { heads.append(status) }
        func upstreamDidReceiveBody(_ bytes: ByteBuffer) {}
        func upstreamDidEnd() {}
        func upstreamDidFail(_ failure: UpstreamFailure) { failures.append(failure) }
        func upstreamRequestBodyDrained() {}
    }

    final class Rerouter: UpstreamStreamRerouter {
        var answer: Bool
        var seen: [UpstreamFailurePoint] = []
        init(answer: Bool) { self.answer = answer }
        func reroute(_ stream: UpstreamStream, after failure: UpstreamFailure, at point: UpstreamFailurePoint) -> Bool {
            seen.append(point)
            if answer { stream.prepareForResend() }
            return answer
        }
    }

    static func request(_ method: String, body: Bool) -> UpstreamRequest {
        UpstreamRequest(method: method, target: "/api/v1/namespaces/default/configmaps", headers: HTTPHeaders(), hasBody: body)
    }

    @Test func aBodyHandedToAConnectionComesBackForTheResend() {
        let handler = Recorder()
        let stream = UpstreamStream(request: Self.request("POST", body: true), handler: handler)
        stream.keepBodyForReplay()
        stream.sendBody(Array("{\"a\":".utf8))
        stream.sendBody(Array("1}".utf8))
        stream.endBody()
        // A connection takes it: the queue empties, the chunks are kept.
        let taken = stream.takePendingBody()
        #expect(taken.chunks.count == 2 && taken.ended)
        #expect(stream.bufferedBodyBytes == 0)
        #expect(stream.isReplayable)
        stream.prepareForResend()
        guard case .waiting = stream.state else {
            Issue.record("not waiting after prepareForResend")
            return
        }
        #expect(stream.bufferedBodyBytes == 7)
        let again = stream.takePendingBody()
        #expect(again.chunks.flatMap { $0 } == Array("{\"a\":1}".utf8))
        #expect(again.ended)
    }

    @Test func aBodyOverTheLimitIsNotKept() {
        let stream = UpstreamStream(request: Self.request("PUT", body: true), handler: Recorder())
        stream.keepBodyForReplay()
        stream.sendBody([UInt8](repeating: 1, count: UpstreamStream.replayLimit))
        stream.sendBody([2])
        _ = stream.takePendingBody()
        #expect(!stream.isReplayable)
    }

    @Test func withoutKeepingOnlyBodylessRequestsAreReplayable() {
        #expect(!UpstreamStream(request: Self.request("POST", body: true), handler: Recorder()).isReplayable)
        #expect(UpstreamStream(request: Self.request("GET", body: false), handler: Recorder()).isReplayable)
    }

    @Test func aResponseHeadEndsReplayability() {
        let handler = Recorder()
        let stream = UpstreamStream(request: Self.request("GET", body: false), handler: handler)
        stream.receivedHead(status: 200, headers: HTTPHeaders())
        #expect(handler.heads == [200])
        #expect(stream.responseStarted)
        #expect(!stream.isReplayable)
    }

    @Test func failuresGoToTheRerouterFirst() {
        let handler = Recorder()
        let rerouter = Rerouter(answer: true)
        let stream = UpstreamStream(request: Self.request("GET", body: false), handler: handler)
        stream.rerouter = rerouter
        stream.fail(.unavailable("refused"), at: .notSent)
        #expect(handler.failures.isEmpty)
        #expect(rerouter.seen == [.notSent])
        rerouter.answer = false
        stream.fail(.badGateway("lost"), at: .lostBeforeResponse)
        #expect(handler.failures == [.badGateway("lost")])
        // A final failure too (the balancer counts it for its server; `ResendRule` never resends it). The handler
        // heard of the failure above already, and the stream let go of it then: it hears of one end only.
        stream.fail(.badGateway("reset"), at: .final)
        #expect(rerouter.seen == [.notSent, .lostBeforeResponse, .final])
        #expect(handler.failures == [.badGateway("lost")])
        #expect(stream.handler == nil)
        guard case .finished = stream.state else {
            Issue.record("a failed stream is finished")
            return
        }
    }

    @Test func withoutARerouterFailuresReachTheHandlerAsBefore() {
        let handler = Recorder()
        let stream = UpstreamStream(request: Self.request("GET", body: false), handler: handler)
        stream.fail(.unavailable("refused"), at: .notSent)
        #expect(handler.failures == [.unavailable("refused")])
    }
}
