@testable import ProxyCore

/// The client HTTP/2 session (nghttp2) fed arbitrary bytes as if from the upstream.
///
/// The session is set up as proxyd uses it: connection preface and SETTINGS taken, then three requests (GET on
/// stream 1, a POST with a body on 3, GET on 5). Input: a control byte (bit 0: the delegate consumes DATA at once;
/// bit 1: it resets stream 3 on its head; bit 2: it opens a new request when a stream closes; bit 3: `ping` and
/// `goAway` before the input), two cut bytes, then the server's bytes, fed in up to three pieces with `takeOutput`
/// after each. Afterwards the transport is aborted, as on EOF.
///
/// Checks, per stream, what `HTTP2SessionDelegate` promises: events only for streams we opened, at most one head and
/// it comes first, data and end only after the head, nothing after end but the close, exactly one close and it is
/// the last event; after an error from `feed`, every stream has been closed; after `abortAllStreams`, none is open.
enum HTTP2SessionFuzz {
    final class Recorder: HTTP2SessionDelegate {
        enum Phase { case open, headed, ended, closed }
        var phases: [Int32: Phase] = [:]
        let consumeAtOnce: Bool
        let resetOnHead: Bool
        let reopenOnClose: Bool
        var reopened = 0

        init(control: UInt8) {
            consumeAtOnce = control & 1 != 0
            resetOnHead = control & 2 != 0
            reopenOnClose = control & 4 != 0
        }

        func opened(_ stream: Int32) {
            require(phases[stream] == nil, "stream \(stream) opened twice")
            phases[stream] = .open
        }

        func session(_ s: HTTP2Session, didReceiveResponseHead status: Int, headers: HTTPHeaders, stream: Int32) {
            require(phases[stream] == .open, "head on stream \(stream) in phase \(String(describing: phases[stream]))")
            require(status >= 200 && status <= 999, "final head with status \(status)")
            phases[stream] = .headed
            if resetOnHead, stream == 3 { s.resetStream(stream) }
        }

        func session(_ s: HTTP2Session, didReceiveData bytes: [UInt8], stream: Int32) {
            require(phases[stream] == .headed,
                    "data on stream \(stream) in phase \(String(describing: phases[stream]))")
            require(!bytes.isEmpty, "empty data event")
            if consumeAtOnce { s.consume(stream: stream, bytes: bytes.count) }
        }

        func session(_ s: HTTP2Session, streamDidEnd stream: Int32) {
            require(phases[stream] == .headed, "end on stream \(stream) in phase \(String(describing: phases[stream]))")
            phases[stream] = .ended
        }

        func session(_ s: HTTP2Session, streamDidClose stream: Int32, errorCode: UInt32) {
            require(phases[stream] != nil && phases[stream] != .closed,
                    "close of stream \(stream) in phase \(String(describing: phases[stream]))")
            phases[stream] = .closed
            if reopenOnClose, reopened < 2, s.canOpenStream,
               let id = try? s.submitRequest(method: "GET", scheme: "https", authority: "fuzz.example",
                                             path: "/again", headers: HTTPHeaders(), hasBody: false) {
                reopened += 1
                opened(id)
            }
        }

        func session(_ s: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: UInt32) {}
        func sessionDidReceivePingAck(_ s: HTTP2Session) {}
        func sessionRemoteSettingsChanged(_ s: HTTP2Session) {
            _ = s.remoteMaxConcurrentStreams
        }

        var openStreams: [Int32] { phases.filter { $0.value != .closed }.map(\.key).sorted() }
    }

    static func run(_ data: [UInt8]) {
        let input = ControlledInput(data)
        let control = input.control

        let recorder = Recorder(control: control)
        let session: HTTP2Session
        do {
            session = try HTTP2Session(delegate: recorder, streamWindow: 65_535, connectionWindow: 1 << 20)
        } catch {
            return require(false, "session setup failed: \(error)")
        }
        _ = session.takeOutput()
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: "application/json")
        for (method, hasBody) in [("GET", false), ("POST", true), ("GET", false)] {
            do {
                let id = try session.submitRequest(method: method, scheme: "https", authority: "fuzz.example:6443",
                                                   path: "/api/v1/pods", headers: headers, hasBody: hasBody)
                recorder.opened(id)
                if hasBody {
                    session.appendBody(Array(repeating: 0x78, count: 100), stream: id)
                    session.endBody(stream: id)
                }
            } catch {
                return require(false, "request setup failed: \(error)")
            }
        }
        if control & 8 != 0 {
            session.ping()
            session.goAway()
        }
        _ = session.takeOutput()

        for piece in pieces(input.payload, at: input.cutPositions) {
            do {
                try session.feed(piece)
            } catch {
                require(recorder.openStreams.isEmpty, "streams \(recorder.openStreams) open after \(error)")
                require(session.activeStreamCount == 0, "session still tracks streams after \(error)")
                _ = session.takeOutput()
                break
            }
            _ = session.takeOutput()
            _ = session.wantsReadOrWrite
        }
        session.abortAllStreams()
        require(recorder.openStreams.isEmpty, "streams \(recorder.openStreams) open after abortAllStreams")
        require(session.activeStreamCount == 0, "session still tracks streams after abortAllStreams")
    }
}
