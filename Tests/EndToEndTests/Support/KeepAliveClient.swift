import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 keep-alive client on a `RawClient`: one request at a time, responses framed by
/// `Content-Length` or chunked encoding. For load and timing tests that need many real keep-alive connections.
final class KeepAliveClient {
    struct Response {
        var status: Int
        var head: String
        var body: [UInt8]
        var closes: Bool
    }

    private let host: String
    private let port: Int
    private var socket: RawClient?
    private var buffer: [UInt8] = []

    init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }

    /// Sends `GET path` (reconnecting if the last response closed the connection) and reads the response.
    /// - Returns: nil when the connection failed, closed or timed out (10 s) before a complete response.
    func get(_ path: String) -> Response? {
        if socket == nil {
            guard let s = try? RawClient(host: host, port: port) else { return nil }
            socket = s
            buffer = []
        }
        guard let socket else { return nil }
        socket.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let response = readResponse(socket)
        if response == nil || response!.closes {
            socket.close()
            self.socket = nil
        }
        return response
    }

    func close() {
        socket?.close()
        socket = nil
    }

    private func fill(_ socket: RawClient) -> Bool {
        let more = socket.readSome()
        if more.isEmpty { return false }
        buffer += more
        return true
    }

    private func readResponse(_ socket: RawClient) -> Response? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            if let r = firstRange(of: separator, in: buffer) { headEnd = r } else if !fill(socket) { return nil }
        }
        let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var length: Int?
        var chunked = false
        var closes = false
        for line in lines.dropFirst() {
            let lower = line.lowercased()
            if lower.hasPrefix("content-length:") { length = Int(lower.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
            if lower.hasPrefix("transfer-encoding:") && lower.contains("chunked") { chunked = true }
            if lower.hasPrefix("connection:") && lower.contains("close") { closes = true }
        }
        var body: [UInt8] = []
        if chunked {
            while true {
                var lineEnd: Int?
                while lineEnd == nil {
                    if let r = firstRange(of: Array("\r\n".utf8), in: buffer) { lineEnd = r } else if !fill(socket) { return nil }
                }
                let sizeText = String(decoding: buffer[..<lineEnd!], as: UTF8.self).split(separator: ";")[0]
                guard let size = Int(sizeText, radix: 16) else { return nil }
                buffer.removeFirst(lineEnd! + 2)
                while buffer.count < size + 2 { if !fill(socket) { return nil } }
                body += buffer[..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }  // no trailers from proxyd
            }
        } else if let length {
            while buffer.count < length { if !fill(socket) { return nil } }
            body = Array(buffer[..<length])
            buffer.removeFirst(length)
        } else {
            return nil  // proxyd always frames its responses to HTTP/1.1 clients
        }
        return Response(status: status, head: head, body: body, closes: closes)
    }

    private func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}
