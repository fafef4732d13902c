/// proxyd's own answers for the browser-facing checks: all but the index page are Kubernetes `Status` objects, so
/// kubectl and client libraries show the message too.
extension LocalResponse {
    /// 400 for a `Host` that is not `uri-host [":" port]` or a malformed service/pod host; the connection closes.
    static func invalidHost(_ reason: String) -> LocalResponse {
        var response = LocalResponse.status(400, reason: "BadRequest", message: "proxyd: \(reason)")
        response.headers.add(name: "X-Content-Type-Options", value: "nosniff")
        response.headers.add(name: "Connection", value: "close")
        return response
    }

    /// 405 for `TRACE` and `TRACK`, which proxyd never forwards.
    static func methodNotAllowed(_ method: String) -> LocalResponse {
        var response = LocalResponse.status(
            405, reason: "MethodNotAllowed",
            message: "proxyd: the method \(method) is not allowed (it would echo the proxy's credentials to the client)")
        response.headers.add(name: "Allow", value: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        response.headers.add(name: "X-Content-Type-Options", value: "nosniff")
        return response
    }

    /// 403 from the cross-origin guard; `message` names the origin and `--accept-origins`.
    static func crossOriginRefused(_ message: String) -> LocalResponse {
        var response = LocalResponse.status(403, reason: "Forbidden", message: message)
        response.headers.add(name: "X-Content-Type-Options", value: "nosniff")
        return response
    }

    /// The service index page: no scripts, no framing, nothing cached, nothing loaded from elsewhere.
    static func serviceIndex(_ html: String) -> LocalResponse {
        LocalResponse(
            status: 200,
            headers: HTTPHeaders([
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"),
                ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
                ("Referrer-Policy", "no-referrer"),
            ]),
            body: Array(html.utf8)
        )
    }
}
