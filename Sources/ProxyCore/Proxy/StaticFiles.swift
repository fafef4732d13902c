internal import Glibc
import FoundationEssentials

/// `--www` / `--www-prefix`: files from a local folder, as kubectl proxy serves them (Go's `http.FileServer` behind
/// `StripPrefix`): any method, not filtered, `index.html` for folders, a listing otherwise, `404 page not found`.
///
/// Paths reach this type decoded and already cleaned by the router (`..` and `//` were redirected), so they cannot
/// leave the folder except through symlinks placed inside it, which are followed as Go does.
/// Files carry `Last-Modified` and `Accept-Ranges: bytes`; conditional requests (`If-Modified-Since`,
/// `If-Unmodified-Since`, `If-Match`/`If-None-Match` with `*`, `If-Range` by date) and byte ranges (one range → 206,
/// several → `multipart/byteranges`, none satisfiable → 416) follow Go's `serveContent`. Only the bytes sent are
/// read; a response is built in memory, so this is meant for the small assets `--www` serves.
struct StaticFiles: Sendable {
    let directory: String
    /// With leading and trailing slash.
    let prefix: String

    init(directory: String, prefix: String) {
        self.directory = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        var p = prefix.hasPrefix("/") ? prefix : "/" + prefix
        if !p.hasSuffix("/") { p += "/" }
        self.prefix = p
    }

    /// Whether a (decoded, clean) path belongs to the static tree, ServeMux-style: the longer of the two prefixes
    /// wins, and the bare prefix without its slash is ours too (it gets redirected).
    func claims(path: String, apiPrefix: String) -> Bool {
        guard path.hasPrefix(prefix) || path + "/" == prefix else { return false }
        return prefix.count >= apiPrefix.count || !path.hasPrefix(apiPrefix)
    }

    func respond(path: String, rawQuery: String?, method: String = "GET", headers: HTTPHeaders = HTTPHeaders()) -> LocalResponse {
        if path + "/" == prefix {
            return .movedPermanently(to: PercentEncoding.encodePath(prefix) + (rawQuery.map { "?" + $0 } ?? ""))
        }
        let relative = String(path.dropFirst(prefix.count))
        let fullPath = directory + "/" + relative
        let existence = ConfigFiles.existence(fullPath)
        guard existence != .missing else { return .notFound }
        if relative.hasSuffix("index.html") && (relative == "index.html" || relative.hasSuffix("/index.html")) {
            return .movedPermanently(to: "./")
        }
        if existence == .directory {
            guard relative.isEmpty || relative.hasSuffix("/") else {
                let last = relative.split(separator: "/").last.map(String.init) ?? ""
                return .movedPermanently(to: PercentEncoding.encodePath(last) + "/")
            }
            let index = fullPath + "index.html"
            if ConfigFiles.existence(index) != .missing { return file(at: index, method: method, request: headers) }
            return listing(of: fullPath)
        }
        return file(at: fullPath, method: method, request: headers)
    }

    private func file(at path: String, method: String, request: HTTPHeaders) -> LocalResponse {
        guard let handle = ReadOnlyFile(path: path) else { return .notFound }
        let size = handle.size
        var headers = HTTPHeaders()
        let modified: Int? = handle.modified
        if let modified, modified > 0 { headers.add(name: "Last-Modified", value: HTTPDate.format(modified)) }

        var rangeHeader = request.first("range")
        switch Self.preconditions(method: method, request: request, modified: modified) {
        case .preconditionFailed:
            return LocalResponse(status: 412, headers: headers, body: [])
        case .notModified:
            return LocalResponse(status: 304, headers: headers, body: [])
        case .proceed(let honourRange):
            if !honourRange { rangeHeader = nil }
        }

        let name = path.split(separator: "/").last.map(String.init) ?? ""
        let ext = name.contains(".") ? String(name.split(separator: ".").last!).lowercased() : ""
        let contentType = Self.contentType(forExtension: ext)
        headers.add(name: "Accept-Ranges", value: "bytes")
        func read(_ range: ByteRange) -> [UInt8]? { handle.read(offset: range.start, count: range.length) }
        var ranges: [ByteRange] = []
        if let rangeHeader {
            switch ByteRange.parse(rangeHeader, size: size) {
            case .failure(let error):
                var h = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")])
                if error == .noOverlap { h.add(name: "Content-Range", value: "bytes */\(size)") }
                return LocalResponse(status: 416, headers: h, body: Array("\(error.rawValue)\n".utf8))
            case .success(let parsed):
                // More bytes than the file has: an attack or a confused client; Go ignores the Range then.
                ranges = parsed.reduce(0) { $0 + $1.length } > size ? [] : parsed
            }
        }
        switch ranges.count {
        case 0:
            guard let body = read(ByteRange(start: 0, length: size)) else { return .notFound }
            headers.add(name: "Content-Type", value: contentType)
            return LocalResponse(status: 200, headers: headers, body: body)
        case 1:
            guard let body = read(ranges[0]) else { return .notFound }
            headers.add(name: "Content-Range", value: ranges[0].contentRange(size: size))
            headers.add(name: "Content-Type", value: contentType)
            return LocalResponse(status: 206, headers: headers, body: body)
        default:
            let boundary = (0..<30).map { _ in
                let byte = UInt8.random(in: 0...255)
                return String(byte >> 4, radix: 16) + String(byte & 15, radix: 16)
            }.joined()
            var body: [UInt8] = []
            for (index, range) in ranges.enumerated() {
                guard let part = read(range) else { return .notFound }
                body += Array("\(index == 0 ? "" : "\r\n")--\(boundary)\r\nContent-Range: \(range.contentRange(size: size))\r\nContent-Type: \(contentType)\r\n\r\n".utf8)
                body += part
            }
            body += Array("\r\n--\(boundary)--\r\n".utf8)
            headers.add(name: "Content-Type", value: "multipart/byteranges; boundary=\(boundary)")
            return LocalResponse(status: 206, headers: headers, body: body)
        }
    }

    enum Precondition: Equatable {
        case proceed(honourRange: Bool)
        case notModified
        case preconditionFailed
    }

    /// Go's `checkPreconditions` for a file without an ETag (dates compared at one-second precision).
    static func preconditions(method: String, request: HTTPHeaders, modified: Int?) -> Precondition {
        let isGetOrHead = method == "GET" || method == "HEAD"
        func listHasStar(_ value: String) -> Bool {
            value.split(separator: ",").contains { $0.trimmingSpaces() == "*" }
        }
        // 1. If-Match (no ETag here: only "*" matches), else If-Unmodified-Since.
        if let ifMatch = request.first("if-match") {
            if !listHasStar(ifMatch) { return .preconditionFailed }
        } else if let value = request.first("if-unmodified-since"), let since = HTTPDate.parse(value),
            let modified, modified > since
        {
            return .preconditionFailed
        }
        // 2. If-None-Match ("*" matches any existing file), else If-Modified-Since for GET/HEAD.
        if let ifNoneMatch = request.first("if-none-match") {
            if listHasStar(ifNoneMatch) { return isGetOrHead ? .notModified : .preconditionFailed }
        } else if isGetOrHead, let value = request.first("if-modified-since"), let since = HTTPDate.parse(value),
            let modified, modified <= since
        {
            return .notModified
        }
        // 3. If-Range: an entity tag never matches (no ETag); a date must equal Last-Modified.
        if let ifRange = request.first("if-range"), request.first("range") != nil {
            let value = ifRange.trimmingSpaces()
            if value.hasPrefix("\"") || value.hasPrefix("W/") { return .proceed(honourRange: false) }
            guard let date = HTTPDate.parse(value), let modified, date == modified else {
                return .proceed(honourRange: false)
            }
        }
        return .proceed(honourRange: true)
    }

    private func listing(of path: String) -> LocalResponse {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        var html = "<pre>\n"
        for name in names {
            let shown = ConfigFiles.existence(path + name) == .directory ? name + "/" : name
            html += "<a href=\"\(htmlEscaped(PercentEncoding.encodePath(shown)))\">\(htmlEscaped(shown))</a>\n"
        }
        html += "</pre>\n"
        return LocalResponse(
            status: 200, headers: HTTPHeaders([("Content-Type", "text/html; charset=utf-8")]), body: Array(html.utf8))
    }

    static func contentType(forExtension ext: String) -> String {
        switch ext {
        case "html", "htm": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json": return "application/json"
        case "txt": return "text/plain; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "ico": return "image/vnd.microsoft.icon"
        case "wasm": return "application/wasm"
        case "woff2": return "font/woff2"
        case "xml": return "text/xml; charset=utf-8"
        default: return "application/octet-stream"
        }
    }
}

/// One byte range of a `Range: bytes=…` request, resolved against the file size.
struct ByteRange: Equatable {
    var start: Int
    var length: Int

    enum ParseError: String, Error, Equatable {
        case invalid = "invalid range"
        case noOverlap = "invalid range: failed to overlap"
    }

    func contentRange(size: Int) -> String { "bytes \(start)-\(start + length - 1)/\(size)" }

    /// Go's `parseRange`: `bytes=` then comma-separated `first-last`, `first-` or `-suffix`; ranges starting past
    /// the end are dropped, and if nothing is left the request does not overlap (416).
    static func parse(_ header: String, size: Int) -> Result<[ByteRange], ParseError> {
        let prefix = "bytes="
        guard header.hasPrefix(prefix) else { return .failure(.invalid) }
        var ranges: [ByteRange] = []
        var noOverlap = false
        for spec in header.dropFirst(prefix.count).split(separator: ",", omittingEmptySubsequences: false) {
            let ra = spec.trimmingSpaces()
            if ra.isEmpty { continue }
            guard let dash = ra.firstIndex(of: "-") else { return .failure(.invalid) }
            let first = ra[..<dash].trimmingSpaces()
            let last = ra[ra.index(after: dash)...].trimmingSpaces()
            func number(_ s: String) -> Int? {
                guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
                return Int(s)
            }
            if first.isEmpty {
                guard let suffix = number(last) else { return .failure(.invalid) }
                let n = min(suffix, size)
                ranges.append(ByteRange(start: size - n, length: n))
            } else {
                guard let start = number(first) else { return .failure(.invalid) }
                if start >= size {
                    noOverlap = true
                    continue
                }
                if last.isEmpty {
                    ranges.append(ByteRange(start: start, length: size - start))
                } else {
                    guard let end = number(last), start <= end else { return .failure(.invalid) }
                    ranges.append(ByteRange(start: start, length: min(end, size - 1) - start + 1))
                }
            }
        }
        if noOverlap && ranges.isEmpty { return .failure(.noOverlap) }
        return .success(ranges)
    }
}

/// An open regular file for `--www`: size and modification time from `fstat`, ranges read with `pread`.
private final class ReadOnlyFile {
    private let fd: Int32
    let size: Int
    /// Seconds since the epoch.
    let modified: Int

    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return nil
        }
        self.fd = fd
        size = Int(info.st_size)
        modified = Int(info.st_mtim.tv_sec)
    }

    deinit { close(fd) }

    /// Exactly `count` bytes from `offset`, or nil (the file shrank, or a read error).
    func read(offset: Int, count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            done += n
        }
        return out
    }
}
