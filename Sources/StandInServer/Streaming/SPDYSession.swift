/// What runs on top of a server-side SPDY session: exec/attach or port-forward.
protocol SPDYStreamApplication: AnyObject {
    /// The client opened a stream (the session has already replied).
    func streamOpened(_ id: UInt32, headers: SPDYHeaderBlock, session: SPDYSession)
    func streamData(_ id: UInt32, _ bytes: [UInt8], session: SPDYSession)
    /// The client finished its side of the stream (FIN).
    func streamFinished(_ id: UInt32, session: SPDYSession)
    func streamReset(_ id: UInt32, session: SPDYSession)
    /// The connection is gone.
    func sessionEnded()
}

/// The server side of a SPDY/3.1 connection as kubelet and the apiserver run it (moby/spdystream semantics): every
/// client stream gets a `SYN_REPLY` at once, client PINGs are echoed, `SETTINGS` and `WINDOW_UPDATE` are accepted
/// and ignored (spdystream does no flow control). Transport-neutral: bytes come in through `receive` and go out
/// through `send` (raw TCP after `Upgrade: SPDY/3.1`, or binary WebSocket messages when tunnelled).
/// Confined to one event loop.
final class SPDYSession {
    /// Largest DATA payload sent in one frame.
    static let maxDataChunk = 32 * 1024

    private let decoder: SPDYFrameDecoder
    private let encoder: SPDYFrameEncoder
    private let send: ([UInt8]) -> Void
    private let closeTransport: () -> Void
    private let application: any SPDYStreamApplication
    private var openStreams: Set<UInt32> = []
    private var finishedLocally: Set<UInt32> = []
    private var finishedRemotely: Set<UInt32> = []
    private var lastStreamID: UInt32 = 0
    private(set) var closed = false

    init(application: any SPDYStreamApplication, send: @escaping ([UInt8]) -> Void, close: @escaping () -> Void) throws {
        decoder = try SPDYFrameDecoder()
        encoder = try SPDYFrameEncoder()
        self.application = application
        self.send = send
        self.closeTransport = close
    }

    func receive(_ bytes: some Sequence<UInt8>) {
        guard !closed else { return }
        decoder.append(bytes)
        do {
            while !closed, let frame = try decoder.next() {
                handle(frame)
            }
        } catch {
            write(.goAway(lastGoodStreamID: lastStreamID, status: 1))
            close()
        }
    }

    private func handle(_ frame: SPDYFrame) {
        switch frame {
        case .synStream(let id, _, _, let fin, let headers):
            guard id & 1 == 1, id > lastStreamID else {
                write(.rstStream(streamID: id, status: SPDYFrame.statusProtocolError))
                return
            }
            lastStreamID = id
            openStreams.insert(id)
            write(.synReply(streamID: id, fin: false, headers: SPDYHeaderBlock()))
            application.streamOpened(id, headers: headers, session: self)
            if fin {
                finishedRemotely.insert(id)
                application.streamFinished(id, session: self)
                forgetIfClosed(id)
            }
        case .data(let id, let fin, let payload):
            guard openStreams.contains(id), !finishedRemotely.contains(id) else { return }
            if !payload.isEmpty { application.streamData(id, payload, session: self) }
            if fin {
                finishedRemotely.insert(id)
                application.streamFinished(id, session: self)
                forgetIfClosed(id)
            }
        case .rstStream(let id, _):
            guard openStreams.contains(id) else { return }
            forget(id)
            application.streamReset(id, session: self)
        case .ping(let id):
            // Echo the client's (odd) pings; the server sends none of its own.
            if id & 1 == 1 { write(.ping(id: id)) }
        case .goAway:
            close()
        case .settings, .windowUpdate, .synReply, .headers:
            break
        }
    }

    // MARK: Sending

    /// Sends stream data (split into frames), optionally finishing the stream.
    func write(_ id: UInt32, _ bytes: [UInt8], fin: Bool = false) {
        guard openStreams.contains(id), !finishedLocally.contains(id) else { return }
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + Self.maxDataChunk)
            let last = end == bytes.count
            write(.data(streamID: id, fin: fin && last, payload: Array(bytes[offset..<end])))
            offset = end
        } while offset < bytes.count
        if fin {
            finishedLocally.insert(id)
            forgetIfClosed(id)
        }
    }

    /// Ends the server's side of a stream (an empty DATA frame with FIN).
    func finish(_ id: UInt32) {
        write(id, [], fin: true)
    }

    func reset(_ id: UInt32) {
        guard openStreams.contains(id) else { return }
        forget(id)
        write(.rstStream(streamID: id, status: SPDYFrame.statusCancel))
    }

    /// A stream both sides have finished is gone (so a long port-forward does not pile up stream state).
    private func forgetIfClosed(_ id: UInt32) {
        if finishedLocally.contains(id) && finishedRemotely.contains(id) { forget(id) }
    }

    private func forget(_ id: UInt32) {
        openStreams.remove(id)
        finishedLocally.remove(id)
        finishedRemotely.remove(id)
    }

    /// Closes the connection (frames already written still go out first).
    func close() {
        guard !closed else { return }
        closed = true
        closeTransport()
    }

    /// The transport went away.
    func transportClosed() {
        closed = true
        application.sessionEnded()
    }

    private func write(_ frame: SPDYFrame) {
        guard !closed, let bytes = try? encoder.encode(frame) else { return }
        send(bytes)
    }
}
