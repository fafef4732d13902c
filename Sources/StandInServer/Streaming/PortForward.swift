/// port-forward (`portforward.k8s.io` over SPDY, tunnelled in WebSocket or not): for every local connection
/// kubectl opens an `error` stream and then a `data` stream carrying the same `port` and `requestID` headers.
/// The stand-in's "pod" listens on every port: it sends one greeting line naming the pod and port, then echoes what
/// it receives. When the client finishes the data stream the pod finishes it too, then ends the error stream
/// empty (no error). A port that is not a number in 1...65535 gets a message on the error stream, as kubelet
/// reports a failed dial.
final class PortForwardApplication: SPDYStreamApplication {
    private struct Pair {
        var error: UInt32?
        var data: UInt32?
    }

    private let namespace: String
    private let pod: String
    private var pairs: [String: Pair] = [:]
    private var requestOf: [UInt32: String] = [:]

    init(namespace: String, pod: String) {
        self.namespace = namespace
        self.pod = pod
    }

    func streamOpened(_ id: UInt32, headers: SPDYHeaderBlock, session: SPDYSession) {
        guard let type = headers["streamtype"], let requestID = headers["requestid"] else {
            session.reset(id)
            return
        }
        requestOf[id] = requestID
        switch type {
        case "error":
            pairs[requestID, default: Pair()].error = id
        case "data":
            pairs[requestID, default: Pair()].data = id
            guard let port = headers["port"].flatMap({ Int($0) }), (1...65535).contains(port) else {
                fail(requestID, "an error occurred forwarding \(headers["port"] ?? "?"): invalid port", session: session)
                return
            }
            session.write(id, Array("standin pod \(namespace)/\(pod) port \(port)\n".utf8))
        default:
            session.reset(id)
        }
    }

    func streamData(_ id: UInt32, _ bytes: [UInt8], session: SPDYSession) {
        guard let requestID = requestOf[id], pairs[requestID]?.data == id else { return }
        session.write(id, bytes)  // the echo
    }

    func streamFinished(_ id: UInt32, session: SPDYSession) {
        // kubectl finishes the error stream at once (it never writes to it); the data stream when the local
        // connection has sent everything.
        guard let requestID = requestOf[id], let pair = pairs[requestID], pair.data == id else { return }
        session.finish(id)
        if let error = pair.error { session.finish(error) }
        forget(requestID)
    }

    func streamReset(_ id: UInt32, session: SPDYSession) {
        guard let requestID = requestOf[id], let pair = pairs[requestID] else { return }
        if pair.data == id, let error = pair.error { session.finish(error) }
        forget(requestID)
    }

    func sessionEnded() {
        pairs = [:]
        requestOf = [:]
    }

    private func fail(_ requestID: String, _ message: String, session: SPDYSession) {
        guard let pair = pairs[requestID] else { return }
        if let error = pair.error { session.write(error, Array(message.utf8), fin: true) }
        if let data = pair.data { session.finish(data) }
        forget(requestID)
    }

    private func forget(_ requestID: String) {
        guard let pair = pairs.removeValue(forKey: requestID) else { return }
        if let error = pair.error { requestOf[error] = nil }
        if let data = pair.data { requestOf[data] = nil }
    }
}
