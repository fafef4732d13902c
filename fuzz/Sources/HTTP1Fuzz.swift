@testable import ProxyCore

/// A parse's events with adjacent body pieces merged, so that runs fed in different pieces compare equal.
enum FlatEvent<Head: Equatable>: Equatable {
    case head(Head)
    case body([UInt8])
    case end
}

func appendFlat<Head>(_ event: FlatEvent<Head>, to events: inout [FlatEvent<Head>]) {
    if case .body(let more) = event, case .body(let sofar)? = events.last {
        events[events.count - 1] = .body(sofar + more)
    } else if case .body(let more) = event, more.isEmpty {
        return
    } else {
        events.append(event)
    }
}

/// HTTP/1 request parser (client → proxyd).
///
/// Input: a control byte (bit 0: small limits), two cut bytes, then the bytes a client sends.
/// Checks: errors are 400/414/431/501/505 only; fed whole or in pieces, the outcome is the same (events, error,
/// tunnel bytes, end-of-input verdict); events come as head, body…, end per message, and a Content-Length body has
/// exactly that length; every HTTP/1.1 head, serialized again by `HTTP1Serializer.requestHead`, parses to the same
/// head.
enum HTTP1RequestFuzz {
    struct Outcome: Equatable {
        var events: [FlatEvent<HTTPRequestHead>] = []
        var error: HTTP1Error?
        var finishError: HTTP1Error?
        var tunnel: [UInt8] = []
        var isTunneling = false
    }

    static func parse(_ message: [UInt8], cutAt positions: [Int], limits: HTTP1Limits) -> Outcome {
        var parser = HTTP1RequestParser(limits: limits)
        var outcome = Outcome()
        do {
            for piece in pieces(message, at: positions) {
                for event in try parser.feed(piece) {
                    switch event {
                    case .head(let head): appendFlat(.head(head), to: &outcome.events)
                    case .body(let bytes): appendFlat(.body(Array(bytes)), to: &outcome.events)
                    case .end: appendFlat(.end, to: &outcome.events)
                    }
                }
            }
        } catch {
            outcome.error = error
            // The failed parser keeps failing with the same error.
            do {
                _ = try parser.feed([0x41][...])
                require(false, "a failed parser accepted more input")
            } catch let again {
                require(again == error, "a failed parser changed its error: \(error) then \(again)")
            }
            return outcome
        }
        outcome.isTunneling = parser.isTunneling
        do { try parser.finish() } catch { outcome.finishError = error }
        outcome.tunnel = parser.takeRemainingBytes()
        return outcome
    }

    static func run(_ data: [UInt8]) {
        let input = ControlledInput(data)
        let limits = input.control & 1 == 0 ? HTTP1Limits() : smallLimits

        let whole = parse(input.payload, cutAt: [], limits: limits)
        let split = parse(input.payload, cutAt: input.cutPositions, limits: limits)
        if let error = whole.error {
            require([400, 414, 431, 501, 505].contains(error.status), "unexpected status \(error.status)")
            // Events completed before the error in the same feed are dropped, so only the errors compare.
            require(split.error == error, "fed in pieces: \(String(describing: split.error)), whole: \(error)")
            return
        }
        require(whole == split, "fed whole and in pieces, the parses differ:\n\(whole)\n\(split)")
        if let error = whole.finishError {
            require(error.status == 400, "finish failed with \(error.status)")
        }

        var open: HTTPRequestHead?
        var bodyBytes = 0
        for event in whole.events {
            switch event {
            case .head(let head):
                require(open == nil, "a head before the previous message ended")
                open = head
                bodyBytes = 0
                checkReserialization(head)
            case .body(let bytes):
                require(open != nil, "body outside a message")
                bodyBytes += bytes.count
            case .end:
                guard let head = open else { return require(false, "end outside a message") }
                switch head.bodyFraming {
                case .none: require(bodyBytes == 0, "body without framing")
                case .contentLength(let n): require(bodyBytes == n, "Content-Length \(n), body \(bodyBytes) bytes")
                case .chunked: break
                case .untilClose: require(false, "read-until-close framing for a request")
                }
                open = nil
            }
        }
        if !whole.tunnel.isEmpty {
            require(whole.isTunneling, "tunnel bytes without a tunnel")
        }
    }

    /// `requestHead` always writes HTTP/1.1, so only 1.1 heads are expected back unchanged.
    static func checkReserialization(_ head: HTTPRequestHead) {
        guard head.version == .http1_1 else { return }
        let bytes = HTTP1Serializer.requestHead(method: head.method, target: head.target, headers: head.headers)
        var parser = HTTP1RequestParser(limits: largeLimits)
        do {
            let events = try parser.feed(bytes[...])
            guard case .head(let again)? = events.first else {
                return require(false, "re-serialized head incomplete: \(bytes)")
            }
            require(again == head, "re-serialized head parses differently:\n\(head)\n\(again)")
        } catch {
            require(false, "re-serialized head rejected (\(error)): \(head)")
        }
    }
}

/// Upstream HTTP/1 response parser (apiserver → proxyd).
///
/// Input: a control byte (bits 0–1: the request method GET, HEAD, CONNECT or POST; bit 2: small limits), two cut
/// bytes, then the bytes the upstream sends.
/// Checks: every error is a 502; whole and in pieces give the same outcome; at most one head (interim 1xx are
/// skipped), no body for HEAD, 204 and 304, a Content-Length body has that length; the head, serialized by
/// `HTTP1Serializer.responseHead`, parses to the same status, headers and reason.
enum HTTP1ResponseFuzz {
    struct Outcome: Equatable {
        var events: [FlatEvent<HTTPResponseHead>] = []
        var error: HTTP1Error?
        var finishEvents: [FlatEvent<HTTPResponseHead>] = []
        var finishError: HTTP1Error?
        var remaining: [UInt8] = []
        var reusable = false
    }

    static let methods = ["GET", "HEAD", "CONNECT", "POST"]

    static func parse(_ message: [UInt8], method: String, cutAt positions: [Int], limits: HTTP1Limits) -> Outcome {
        var parser = HTTP1ResponseParser(requestMethod: method, limits: limits)
        var outcome = Outcome()
        func record(_ event: HTTP1ResponseEvent, _ events: inout [FlatEvent<HTTPResponseHead>]) {
            switch event {
            case .head(let head): appendFlat(.head(head), to: &events)
            case .body(let bytes): appendFlat(.body(Array(bytes)), to: &events)
            case .end: appendFlat(.end, to: &events)
            }
        }
        do {
            for piece in pieces(message, at: positions) {
                for event in try parser.feed(piece) { record(event, &outcome.events) }
            }
        } catch {
            outcome.error = error
            return outcome
        }
        outcome.remaining = parser.takeRemainingBytes()
        do {
            for event in try parser.finish() { record(event, &outcome.finishEvents) }
        } catch {
            outcome.finishError = error
        }
        outcome.reusable = parser.connectionReusable
        return outcome
    }

    static func run(_ data: [UInt8]) {
        let input = ControlledInput(data)
        let method = methods[Int(input.control & 3)]
        let limits = input.control & 4 == 0 ? HTTP1Limits() : smallLimits

        let whole = parse(input.payload, method: method, cutAt: [], limits: limits)
        let split = parse(input.payload, method: method, cutAt: input.cutPositions, limits: limits)
        if let error = whole.error {
            require(error.status == 502, "upstream error with status \(error.status)")
            require(split.error == error, "fed in pieces: \(String(describing: split.error)), whole: \(error)")
            return
        }
        require(whole == split, "fed whole and in pieces, the parses differ:\n\(whole)\n\(split)")
        if let error = whole.finishError { require(error.status == 502, "finish failed with \(error.status)") }

        let events = whole.events + whole.finishEvents
        guard case .head(let head)? = events.first else {
            return require(events.isEmpty, "events before the head: \(events)")
        }
        require(head.status >= 101 && head.status <= 999 && !(head.status < 200 && head.status != 101),
                "status \(head.status) reported")
        require(events.dropFirst().allSatisfy { $0 != .head(head) && !isHead($0) }, "two heads in one response")
        let body = events.reduce(0) { n, e in if case .body(let b) = e { n + b.count } else { n } }
        if method == "HEAD" || head.status == 204 || head.status == 304 || head.status == 101 {
            require(body == 0, "a body after a \(head.status) to \(method)")
        }
        if events.last == .end, case .contentLength(let n)? = try? framing(head), body > 0 {
            require(body == n, "Content-Length \(n), body \(body) bytes")
        }
        if whole.reusable { require(events.last == .end, "reusable before the end") }
        checkReserialization(head)
    }

    static func isHead(_ event: FlatEvent<HTTPResponseHead>) -> Bool {
        if case .head = event { return true }
        return false
    }

    static func framing(_ head: HTTPResponseHead) throws(HTTP1Error) -> HTTPBodyFraming? {
        guard let length = try HTTP1Framing.contentLength(head.headers) else { return nil }
        return .contentLength(length)
    }

    static func checkReserialization(_ head: HTTPResponseHead) {
        let bytes = HTTP1Serializer.responseHead(head)
        var parser = HTTP1ResponseParser(requestMethod: "GET", limits: largeLimits)
        do {
            let events = try parser.feed(bytes[...])
            guard case .head(let again)? = events.first else {
                return require(false, "re-serialized head incomplete: \(bytes)")
            }
            let reason = head.reason.isEmpty ? HTTP1Serializer.reasonPhrase(for: head.status) : head.reason
            require(again.status == head.status && again.headers == head.headers && again.reason == reason,
                    "re-serialized head parses differently:\n\(head)\n\(again)")
        } catch {
            require(false, "re-serialized head rejected (\(error)): \(head)")
        }
    }
}
