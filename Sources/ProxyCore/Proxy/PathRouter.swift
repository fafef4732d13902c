/// Maps a client request-target to the apiserver path, with kubectl proxy's prefix rules:
///
/// - paths are checked in decoded form; any `.`/`..` segment or `//` gets a `301` to the cleaned path (Go's
///   ServeMux does the same), so nothing that escapes the prefix is ever forwarded;
/// - the bare prefix without its trailing slash gets a `301` to the slash form; a path outside the prefix gets
///   `404 page not found`;
/// - the prefix is stripped unless it starts with `/api` (kubectl's rule);
/// - unlike kubectl, the raw encoding (`%2F`) survives stripping, and the query is passed byte for byte.
public struct PathRouter: Sendable {
    /// The API prefix, always with a leading and trailing slash.
    public let apiPrefix: String
    /// `--append-server-path`: the kubeconfig server URL's path, joined in front of every upstream path.
    public let serverBasePath: String

    public init(apiPrefix: String = "/", serverBasePath: String = "") {
        var p = apiPrefix.hasPrefix("/") ? apiPrefix : "/" + apiPrefix
        if !p.hasSuffix("/") { p += "/" }
        self.apiPrefix = p
        var base = serverBasePath
        while base.hasSuffix("/") { base.removeLast() }
        self.serverBasePath = base
    }

    public enum Decision: Equatable, Sendable {
        /// Forward: `upstreamTarget` is path + query for the apiserver; `filterPath` is the decoded path the
        /// request filter checks.
        case forward(upstreamTarget: String, filterPath: String)
        case redirect(location: String)
        case notFound
        case badRequest(String)
    }

    /// - Parameter rawPath: the path component of the request-target as received (origin form), still escaped.
    /// - Parameter rawQuery: the query without `?`, or `nil` when the target had no `?`.
    public func route(rawPath: String, rawQuery: String?) -> Decision {
        let querySuffix = rawQuery.map { "?" + $0 } ?? ""
        let decoded: String
        switch Self.checkedPath(rawPath: rawPath, querySuffix: querySuffix) {
        case .clean(let path): decoded = path
        case .answer(let decision): return decision
        }
        return route(rawPath: rawPath, cleanPath: decoded, querySuffix: querySuffix)
    }

    /// `route(rawPath:rawQuery:)` for a path `checkedPath` already decoded and found clean.
    func route(rawPath: String, cleanPath decoded: String, querySuffix: String) -> Decision {
        // Bare prefix: "/custom" → "/custom/".
        if apiPrefix != "/" && decoded + "/" == apiPrefix {
            return .redirect(location: PercentEncoding.encodePath(apiPrefix) + querySuffix)
        }
        guard decoded.hasPrefix(apiPrefix) else { return .notFound }

        var upstreamRaw: String
        var filterPath: String
        if apiPrefix.hasPrefix("/api") {
            upstreamRaw = rawPath
            filterPath = decoded
        } else {
            // Strip the prefix, leaving a leading "/". Prefer the raw form so escapes survive.
            let keep = apiPrefix.count - 1
            filterPath = String(decoded.dropFirst(keep))
            if rawPath.hasPrefix(apiPrefix) {
                upstreamRaw = String(rawPath.dropFirst(keep))
            } else {
                upstreamRaw = PercentEncoding.encodePath(filterPath)
            }
        }
        if !serverBasePath.isEmpty {
            upstreamRaw = serverBasePath + upstreamRaw
        }
        return .forward(upstreamTarget: upstreamRaw + querySuffix, filterPath: filterPath)
    }

    enum CheckedPath: Equatable {
        /// The decoded path, which has no `.`/`..` segments and no `//`.
        case clean(String)
        /// 400 for a malformed escape, 301 to the cleaned path otherwise.
        case answer(Decision)
    }

    /// Decodes `rawPath` and checks that it is clean: what both the path form and the service hosts require before
    /// a path is mapped, so that no `..` (raw or escaped) ever reaches the apiserver.
    static func checkedPath(rawPath: String, querySuffix: String) -> CheckedPath {
        guard let decoded = PercentEncoding.decode(rawPath) else {
            return .answer(.badRequest("invalid URL escape in path"))
        }
        let cleaned = cleanPath(decoded)
        if cleaned != decoded {
            return .answer(.redirect(location: PercentEncoding.encodePath(cleaned) + querySuffix))
        }
        return .clean(decoded)
    }

    /// Go's `path.Clean`, keeping a trailing slash (as `net/http.cleanPath` does).
    static func cleanPath(_ p: String) -> String {
        isClean(p) ? p : cleaned(p)  // nearly every path is clean: no split and join
    }

    /// `path.Clean` the long way (split into segments, drop `.`, resolve `..`, join). Segments are split on the byte
    /// `/`, as Go and the apiserver split them: split on Characters, a `/` followed by a combining mark (`/%CC%81`)
    /// is one grapheme, not a separator, and the `..` before it would reach the apiserver (a fuzzing finding, see
    /// PathRouterFuzzFindingsTests).
    static func cleaned(_ p: String) -> String {
        if p.isEmpty { return "/" }
        var segments: [Substring] = []
        for seg in p.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if seg.elementsEqual(".".utf8) { continue }
            if seg.elementsEqual("..".utf8) {
                if !segments.isEmpty { segments.removeLast() }
                continue
            }
            segments.append(Substring(seg))
        }
        var out = "/" + segments.joined(separator: "/")
        if p.utf8.last == UInt8(ascii: "/") && out != "/" { out += "/" }
        return out
    }
}

extension PathRouter {
    /// Whether `cleaned(p)` would return `p` itself: it starts with `/` and has no empty, `.` or `..` segment
    /// (a trailing `/` is kept). One pass over the bytes.
    static func isClean(_ p: String) -> Bool {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        guard p.utf8.first == slash else { return false }
        var length = 0, dots = 0
        for b in p.utf8.dropFirst() {
            if b == slash {
                if length == 0 || (dots == length && length <= 2) { return false }
                length = 0
                dots = 0
            } else {
                length += 1
                if b == dot { dots += 1 }
            }
        }
        return length == 0 || dots != length || length > 2
    }
}

/// Splits a request-target into path and query. Absolute-form targets (`http://host/p?q`) also yield the host.
public struct RequestTarget: Equatable, Sendable {
    public var host: String?
    public var rawPath: String
    public var rawQuery: String?

    public init?(_ target: String) {
        var rest = Substring(target)
        host = nil
        if !rest.hasPrefix("/") {
            let lower = rest.prefix(8).lowercased()
            let schemeLength: Int
            if lower.hasPrefix("http://") { schemeLength = 7 }
            else if lower.hasPrefix("https://") { schemeLength = 8 }
            else { return nil }
            rest = rest.dropFirst(schemeLength)
            let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            let authority = rest[..<end]
            if authority.contains("@") { return nil }  // userinfo is not allowed in a request-target
            host = String(authority)
            rest = rest[end...]
            if rest.isEmpty || rest.hasPrefix("?") { rest = "/" + rest }
        }
        // A fragment never belongs in a request-target. (Byte scans: a Character search walks grapheme clusters,
        // several times slower on every request.)
        if rest.utf8.contains(UInt8(ascii: "#")) { return nil }
        if let q = rest.utf8.firstIndex(of: UInt8(ascii: "?")) {
            rawPath = String(rest[..<q])
            rawQuery = String(rest[rest.utf8.index(after: q)...])
        } else {
            rawPath = String(rest)
            rawQuery = nil
        }
    }
}

enum PercentEncoding {
    /// Decodes `%XX` escapes; `nil` for a malformed escape. `+` is left alone (paths, not forms).
    static func decode(_ s: String) -> String? {
        guard s.utf8.contains(UInt8(ascii: "%")) else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else {
                    return nil
                }
                out.append(hv << 4 | lv)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes what may not appear raw in a path segment (RFC 3986 pchar plus `/`).
    static func encodePath(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if isPathChar(b) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(UnicodeScalar(hex[Int(b >> 4)])) + String(UnicodeScalar(hex[Int(b & 15)]))
            }
        }
        return out
    }

    private static func isPathChar(_ b: UInt8) -> Bool {
        isUnreservedOrSubDelim(b) || b == UInt8(ascii: ":") || b == UInt8(ascii: "@") || b == UInt8(ascii: "/")
    }

    /// RFC 3986 unreserved characters and sub-delims: what a reg-name (a host) is made of, besides `%XX`.
    static func isUnreservedOrSubDelim(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~!$&'()*+,;=".utf8.contains(b)
        }
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
