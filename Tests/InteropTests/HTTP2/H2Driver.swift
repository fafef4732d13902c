import Foundation
@testable import ProxyCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A minimal client stack for the HTTP/2 interop tests: a loopback TCP socket, our OpenSSL `TLSEngine` and our
// nghttp2 `HTTP2Session`, pumped by hand with poll(2) and a deadline. Nothing of proxyd's `EventLoop` is involved,
// so what these tests exercise is exactly the byte-in / byte-out contract of the two engines against the stand-in's
// independent SwiftNIO + NIOSSL + NIOHTTP2 stack.

struct H2DriverError: Error, CustomStringConvertible {
    let description: String
}

// MARK: - Recording delegate

/// Records every `HTTP2SessionDelegate` event, per stream and in order.
final class H2Recorder: HTTP2SessionDelegate {
    struct Head {
        let status: Int
        let headers: HTTPHeaders
    }

    var heads: [Int32: Head] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var ended: Set<Int32> = []
    var closed: [Int32: UInt32] = [:]
    /// Per-stream event names in delivery order ("head", "data", "end", "close").
    var log: [Int32: [String]] = [:]
    var goAways: [(lastStreamID: Int32, errorCode: UInt32)] = []
    var pingAcks = 0
    var settingsChanges = 0
    /// When true, every DATA chunk is handed back to the flow-control windows as soon as it is delivered
    /// (`consume` from inside the callback, which the delegate contract allows).
    var autoConsume = true

    func session(_ s: HTTP2Session, didReceiveResponseHead status: Int, headers: HTTPHeaders, stream: Int32) {
        heads[stream] = Head(status: status, headers: headers)
        log[stream, default: []].append("head")
    }

    func session(_ s: HTTP2Session, didReceiveData bytes: ByteBuffer, stream: Int32) {
        bodies[stream, default: []] += bytes.readableBytesArray
        if log[stream]?.last != "data" { log[stream, default: []].append("data") }
        if autoConsume { s.consume(stream: stream, bytes: bytes.readableBytes) }
    }

    func session(_ s: HTTP2Session, streamDidEnd stream: Int32) {
        ended.insert(stream)
        log[stream, default: []].append("end")
    }

    func session(_ s: HTTP2Session, streamDidClose stream: Int32, errorCode: UInt32) {
        closed[stream] = errorCode
        log[stream, default: []].append("close")
    }

    func session(_ s: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: UInt32) {
        goAways.append((lastStreamID, errorCode))
    }

    func sessionDidReceivePingAck(_ s: HTTP2Session) { pingAcks += 1 }

    func sessionRemoteSettingsChanged(_ s: HTTP2Session) { settingsChanges += 1 }

    func body(_ stream: Int32) -> String { String(decoding: bodies[stream] ?? [], as: UTF8.self) }

    /// The stream's body parsed as a JSON object.
    func json(_ stream: Int32) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(bodies[stream] ?? []))
        guard let dictionary = object as? [String: Any] else {
            throw H2DriverError(description: "stream \(stream): body is not a JSON object: \(body(stream).prefix(200))")
        }
        return dictionary
    }
}

// MARK: - Frame trace

/// An independent view of the wire: the header of every HTTP/2 frame the peer sent (RFC 9113 §4.1), parsed from
/// the decrypted byte stream before it reaches the session. Lets a test tell what NIO sent from what the session
/// delivered.
struct H2FrameTrace {
    struct Frame: Equatable {
        let type: UInt8
        let flags: UInt8
        let stream: Int32
        let length: Int
    }

    static let data: UInt8 = 0x0
    static let headers: UInt8 = 0x1
    static let rstStream: UInt8 = 0x3
    static let goAway: UInt8 = 0x7

    private(set) var frames: [Frame] = []
    private var pending: [UInt8] = []

    mutating func append(_ bytes: [UInt8]) {
        pending += bytes
        var offset = 0
        while pending.count - offset >= 9 {
            let length = Int(pending[offset]) << 16 | Int(pending[offset + 1]) << 8 | Int(pending[offset + 2])
            guard pending.count - offset >= 9 + length else { break }
            let stream = (UInt32(pending[offset + 5]) << 24 | UInt32(pending[offset + 6]) << 16
                | UInt32(pending[offset + 7]) << 8 | UInt32(pending[offset + 8])) & 0x7FFF_FFFF
            frames.append(Frame(type: pending[offset + 3], flags: pending[offset + 4], stream: Int32(stream),
                                length: length))
            offset += 9 + length
        }
        pending.removeFirst(offset)
    }

    func frames(stream: Int32) -> [Frame] { frames.filter { $0.stream == stream } }

    /// DATA payload bytes (padding included) the peer sent on `stream`.
    func dataBytes(stream: Int32) -> Int {
        frames(stream: stream).filter { $0.type == Self.data }.reduce(0) { $0 + $1.length }
    }
}

// MARK: - Driver

/// One HTTP/2-over-TLS connection to a stand-in, pumped on the calling thread.
///
/// Outbound: `session.takeOutput` → `tls.writePlaintext` → `tls.takeCiphertext` → socket.
/// Inbound: socket → `tls.feed` → `tls.readPlaintext` → `session.feed`.
final class H2Driver {
    static let token = "standin-token"

    let socket: LoopbackSocket
    let tls: TLSEngine
    let recorder: H2Recorder
    let session: HTTP2Session
    let authority: String

    /// The peer closed TCP (or sent close_notify).
    private(set) var transportClosed = false
    /// First TLS failure seen while pumping.
    private(set) var tlsFailure: TLSError?
    /// First error `session.feed` threw.
    private(set) var sessionError: HTTP2Error?
    /// Headers of every frame the peer sent, as they came off TLS.
    private(set) var trace = H2FrameTrace()

    /// Connects, completes the TLS handshake (ALPN h2, http/1.1) and waits for the peer's SETTINGS.
    init(port: Int, caPEM: String, streamWindow: Int32 = 1 << 20, connectionWindow: Int32 = 16 << 20,
         timeout: Duration = .seconds(10)) throws {
        authority = "127.0.0.1:\(port)"
        socket = try LoopbackSocket(port: port)
        let configuration = ProxyCore.TLSConfiguration(caPEM: Array(caPEM.utf8), alpn: ["h2", "http/1.1"])
        tls = try TLSEngine(context: TLSContext(configuration: configuration), host: "127.0.0.1")
        let recorder = H2Recorder()
        self.recorder = recorder
        session = try HTTP2Session(delegate: recorder, streamWindow: streamWindow, connectionWindow: connectionWindow)

        if case .failed(let error) = tls.startHandshake() { throw error }
        let handshakeDone = try pump(for: timeout) { [tls] in tls.isHandshakeComplete }
        if let tlsFailure { throw tlsFailure }
        guard handshakeDone else { throw H2DriverError(description: "TLS handshake did not complete in \(timeout)") }
        let settingsSeen = try pump(for: timeout) { recorder.settingsChanges > 0 }
        guard settingsSeen else { throw H2DriverError(description: "no SETTINGS from the peer in \(timeout)") }
    }

    var negotiatedALPN: String? { tls.negotiatedALPN }

    /// Submits a GET with the stand-in's bearer token.
    func get(_ path: String) throws -> Int32 {
        try request("GET", path, hasBody: false)
    }

    func request(_ method: String, _ path: String, hasBody: Bool, headers extra: [(String, String)] = []) throws
        -> Int32 {
        var headers = HTTPHeaders()
        headers.add(name: "authorization", value: "Bearer \(Self.token)")
        headers.add(name: "accept", value: "application/json")
        for (name, value) in extra { headers.add(name: name, value: value) }
        return try session.submitRequest(method: method, scheme: "https", authority: authority, path: path,
                                         headers: headers, hasBody: hasBody)
    }

    /// Writes everything the session and the TLS engine have queued.
    func flush() throws {
        while true {
            let frames = session.takeOutput()
            if !frames.isEmpty, case .failed(let error) = tls.writePlaintext(frames[...]) {
                tlsFailure = tlsFailure ?? error
            }
            let ciphertext = tls.takeCiphertext()
            if !ciphertext.isEmpty { try socket.send(ciphertext) }
            if frames.isEmpty { return }
        }
    }

    /// One round: flush, wait up to `milliseconds` for input, feed it through TLS into the session, flush.
    func pumpOnce(waitingUpTo milliseconds: Int32 = 10) throws {
        try flush()
        guard !transportClosed, tlsFailure == nil else { return }
        guard let ciphertext = try socket.receive(waitingUpTo: milliseconds) else { return }
        if ciphertext.isEmpty {
            transportClosed = true
            return
        }
        tls.feed(ciphertext: ciphertext[...])
        var plaintext: [UInt8] = []
        var result: TLSResult
        repeat {
            result = tls.readPlaintext(into: &plaintext, max: 256 * 1024)
        } while result == .complete
        switch result {
        case .failed(let error): tlsFailure = tlsFailure ?? error
        case .closed: transportClosed = true
        default: break
        }
        if !plaintext.isEmpty, tls.isHandshakeComplete { trace.append(plaintext) }
        if !plaintext.isEmpty, sessionError == nil {
            do {
                try session.feed(plaintext[...])
            } catch {
                sessionError = error
            }
        }
        try flush()
    }

    /// Pumps until `condition` holds (true) or `duration` passes, the transport closes or TLS fails (false).
    @discardableResult
    func pump(for duration: Duration, until condition: () throws -> Bool) throws -> Bool {
        let deadline = ContinuousClock.now + duration
        while true {
            if try condition() { return true }
            if transportClosed || tlsFailure != nil { return false }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            let milliseconds = Int32(max(1, min(20, (left / .milliseconds(1)).rounded(.up))))
            try pumpOnce(waitingUpTo: milliseconds)
        }
    }

    /// Pumps for the whole of `duration` (for "nothing more must arrive" checks).
    func pump(for duration: Duration) throws {
        try pump(for: duration) { false }
    }
}
