/// Header rules for both directions of an exchange (RFC 9110 §7.6.1 and kubectl's ReverseProxy behaviour).
enum HeaderRewriter {
    /// Hop-by-hop fields that never cross the proxy, lowercased.
    static let hopByHop: [String] = [
        "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade",
    ]

    static func isHopByHop(_ name: String) -> Bool {
        // Most fields are none of them: rule them out by length before comparing (runs for every field, twice
        // per exchange).
        let length = name.utf8.count
        guard length < 64, hopByHopLengths & (1 << length) != 0 else { return false }
        return hopByHop.contains { name.equalsIgnoringASCIICase($0) }
    }

    /// Bit n set: some hop-by-hop name has n bytes.
    private static let hopByHopLengths: UInt64 = hopByHop.reduce(0) { $0 | 1 << $1.utf8.count }

    /// Removes hop-by-hop fields and every field the `Connection` header names.
    /// `TE: trailers` is kept, as Go's ReverseProxy does. With `keepUpgrade`, `Connection: Upgrade` and `Upgrade`
    /// survive (protocol upgrades are the one case where they are end-to-end in effect).
    /// Runs on every request and response: names are compared in place, nothing is lowercased or hashed.
    static func removeHopByHop(_ headers: inout HTTPHeaders, keepUpgrade: Bool = false) {
        guard keepUpgrade || headers.fields.contains(where: { isHopByHop($0.name) }) else { return }
        let named = headers.tokens("connection")  // lowercased
        let teTrailers = headers.containsToken("te", "trailers")
        headers.removeAll { field in
            if keepUpgrade && field.name.equalsIgnoringASCIICase("upgrade") { return false }
            return isHopByHop(field.name) || named.contains { field.name.equalsIgnoringASCIICase($0) }
        }
        if teTrailers { headers.add(name: "TE", value: "trailers") }
        if keepUpgrade {
            headers.add(name: "Connection", value: "Upgrade")
        }
    }

    /// Builds the header list sent to the apiserver for a client request.
    ///
    /// - Parameters:
    ///   - clientHeaders: the headers as the client sent them.
    ///   - clientIP: the peer address for `X-Forwarded-For`, `nil` for unix-socket clients (kubectl adds none).
    ///   - credentials: the current credential snapshot; header credentials step aside when the client sent its
    ///     own `Authorization` (kubectl's behaviour), impersonation when it sent `Impersonate-User`.
    ///   - isUpgrade: keep `Connection: Upgrade` / `Upgrade`.
    static func upstreamRequestHeaders(
        _ clientHeaders: HTTPHeaders,
        clientIP: String?,
        credentials: CredentialSnapshot,
        isUpgrade: Bool
    ) -> HTTPHeaders {
        var headers = clientHeaders
        // One copy with room for the fields added below (forwarding, user agent, credentials, impersonation).
        headers.reserveCapacity(clientHeaders.count + 4)
        removeHopByHop(&headers, keepUpgrade: isUpgrade)
        // Host becomes :authority (h2) or is re-added by the HTTP/1 writer with the apiserver's authority.
        headers.remove(name: "host")
        // proxyd answers `Expect: 100-continue` itself.
        headers.remove(name: "expect")
        if let ip = clientIP {
            let prior = headers.values("x-forwarded-for")
            headers.remove(name: "x-forwarded-for")
            headers.add(name: "X-Forwarded-For", value: (prior + [ip]).joined(separator: ", "))
        }
        if !headers.contains("user-agent") {
            headers.add(name: "User-Agent", value: ProxyVersion.userAgent)
        }
        credentials.apply(to: &headers)
        return headers
    }

    /// Cleans an upstream response head for the client; framing headers are set by the writer.
    static func clientResponseHeaders(_ upstream: HTTPHeaders) -> HTTPHeaders {
        var headers = upstream
        removeHopByHop(&headers)
        return headers
    }
}

public enum ProxyVersion {
    public static let version = "0.1.0"
    static let userAgent = "proxyd/\(version)"
}
