import Foundation
import NIOHTTP1

/// The header changes a Kubernetes apiserver's service/pod proxy makes on the way to the backend and back
/// (k8s.io/apimachinery `pkg/util/proxy` over Go's `httputil.ReverseProxy`, behind the apiserver's filters).
enum ProxyHeaders {
    /// RFC 9110 §7.6.1 connection-specific fields, as Go's reverse proxy removes them both ways.
    static let hopByHop: Set<String> = [
        "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade",
    ]

    /// Removed from backend responses (`corsRemovingTransport`).
    static let cors: Set<String> = [
        "access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods",
        "access-control-allow-origin",
    ]

    /// `headers` without the hop-by-hop fields and those that `Connection` names.
    static func removingHopByHop(_ headers: HTTPHeaders) -> HTTPHeaders {
        let named = Set(headers[canonicalForm: "connection"].map { $0.lowercased() })
        var out = HTTPHeaders()
        for (name, value) in headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || named.contains(lower) { continue }
            out.add(name: name, value: value)
        }
        return out
    }

    /// The request head the backend gets. The apiserver's authentication filter has removed `Authorization` and its
    /// impersonation filter the `Impersonate-*` fields; `Host` stays what the client sent (the apiserver's address);
    /// the client's address is appended to `X-Forwarded-For`. A plain request loses its hop-by-hop fields and gets
    /// `X-Forwarded-Uri` (the full proxy path); an upgrade keeps `Connection`/`Upgrade` and is sent as it came.
    static func backendRequest(
        _ head: HTTPRequestHead,
        uri: String,
        clientAddress: String?,
        forwardedURI: String?,
        backendHostPort: String,
        bodyLength: Int?
    ) -> HTTPRequestHead {
        var headers = forwardedURI == nil ? head.headers : removingHopByHop(head.headers)
        headers.remove(name: "authorization")
        for (name, _) in headers where name.lowercased().hasPrefix("impersonate-") {
            headers.remove(name: name)
        }
        if !headers.contains(name: "host") { headers.add(name: "Host", value: backendHostPort) }
        if let clientAddress {
            let prior = headers["x-forwarded-for"]
            headers.remove(name: "x-forwarded-for")
            headers.add(name: "X-Forwarded-For", value: (prior + [clientAddress]).joined(separator: ", "))
        }
        if let forwardedURI { headers.replaceOrAdd(name: "X-Forwarded-Uri", value: forwardedURI) }
        if let bodyLength {
            headers.remove(name: "content-length")
            if bodyLength > 0 || [.POST, .PUT, .PATCH].contains(head.method) {
                headers.add(name: "Content-Length", value: String(bodyLength))
            }
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: headers)
    }

    /// The response head the client gets: hop-by-hop and CORS fields removed, `Location` rewritten.
    static func clientResponse(_ headers: HTTPHeaders, rewriter: ProxyURLRewriter) -> HTTPHeaders {
        var out = removingHopByHop(headers)
        for name in cors { out.remove(name: name) }
        if let location = out.first(name: "location") {
            out.replaceOrAdd(name: "Location", value: rewriter.rewrite(location))
        }
        return out
    }

    /// True when the apiserver would rewrite the body: `text/html` (parameters ignored) without a redirect.
    /// Bodies in a content coding other than identity are passed on unchanged (the apiserver would decode gzip and
    /// deflate first; the stand-in's backends do not compress).
    static func isRewritableHTML(_ headers: HTTPHeaders) -> Bool {
        guard !headers.contains(name: "location") else { return false }
        let type = headers.first(name: "content-type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        let coding = headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        return type == "text/html" && coding == "identity"
    }
}
