@testable import ProxyCore
import Testing

/// Issue 12 part 3: the kubelet's exec-like endpoints behind the apiserver's node proxy are rejected by default,
/// whatever form the path takes on the wire. Each case goes through `PathRouter` as a request would: a path that is
/// not decoded-and-clean is redirected to its clean form, which a client then requests (curl -L, browsers), so the
/// filter sees what the apiserver would pass to the kubelet.
@Suite struct NodeProxyRejectTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var path: String
        var rejected: Bool
        var testDescription: String { "\(path) → \(rejected ? "rejected" : "passes")" }
    }

    static let cases: [Case] = [
        Case(path: "/api/v1/nodes/node-1/proxy/exec/default/pod/c?command=sh", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/run/default/pod/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/attach/default/pod/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/portForward/default/pod", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/cri/exec/AbCd", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/exec", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/exec/", rejected: true),
        // Node names with a port or scheme (the apiserver's `[scheme:]name[:port]`).
        Case(path: "/api/v1/nodes/node-1:10250/proxy/exec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/https:node-1:10250/proxy/attach/ns/p/c", rejected: true),
        // Percent-encoding: the apiserver decodes the path.
        Case(path: "/api/v1/nodes/node-1/proxy/%65xec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/port%46orward/ns/p", rejected: true),
        Case(path: "/api/v1/nodes/node-1%2Fproxy%2Fexec/ns/p/c", rejected: true),
        Case(path: "/api%2Fv1/nodes/node-1/proxy/exec/ns/p/c", rejected: true),
        // Dot segments and empty segments: the apiserver path.Join-s the rest onto the kubelet URL.
        Case(path: "/api/v1/nodes/node-1/proxy/stats/../exec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/./exec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy//exec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/%2E%2E/proxy/exec/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/x%2F..%2Frun/ns/p/c", rejected: true),
        // Case: the kubelet's routes are case-sensitive, but blocking other spellings costs nothing.
        Case(path: "/api/v1/nodes/node-1/proxy/EXEC/ns/p/c", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/portforward/ns/p", rejected: true),
        Case(path: "/api/v1/nodes/node-1/proxy/Attach/ns/p/c", rejected: true),
        // Still allowed: the rest of the node proxy and the node object.
        Case(path: "/api/v1/nodes/node-1/proxy/stats/summary", rejected: false),
        Case(path: "/api/v1/nodes/node-1/proxy/metrics/cadvisor", rejected: false),
        Case(path: "/api/v1/nodes/node-1/proxy/logs/", rejected: false),
        Case(path: "/api/v1/nodes/node-1/proxy/configz", rejected: false),
        Case(path: "/api/v1/nodes/node-1/proxy/executor", rejected: false),
        Case(path: "/api/v1/nodes/node-1/proxy/", rejected: false),
        Case(path: "/api/v1/nodes/node-1", rejected: false),
        Case(path: "/api/v1/nodes/exec", rejected: false),
        Case(path: "/api/v1/nodes/node-1/status", rejected: false),
        // kubectl's own defaults still hold.
        Case(path: "/api/v1/namespaces/default/pods/p/exec", rejected: true),
        Case(path: "/api/v1/namespaces/default/pods/p/attach", rejected: true),
    ]

    /// The filter's verdict for a raw request path, after following at most one redirect (as a client would).
    static func rejected(rawPath: String, method: String = "GET", router: PathRouter = PathRouter()) throws -> Bool {
        let filter = try RequestFilter()
        var path = rawPath
        for _ in 0..<2 {
            let target = try #require(RequestTarget(path))
            switch router.route(rawPath: target.rawPath, rawQuery: target.rawQuery) {
            case .forward(_, let filterPath):
                return !filter.accepts(method: method, path: filterPath, host: "localhost")
            case .redirect(let location):
                path = location
            case .notFound, .badRequest:
                return true  // not forwarded either
            }
        }
        Issue.record("redirect loop for \(rawPath)")
        return false
    }

    @Test(arguments: cases)
    func defaultRejectList(_ c: Case) throws {
        #expect(try Self.rejected(rawPath: c.path) == c.rejected)
    }

    /// A WebSocket exec is a GET; SPDY exec a POST; every method is rejected the same way.
    @Test(arguments: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "get"])
    func everyMethod(_ method: String) throws {
        #expect(try Self.rejected(rawPath: "/api/v1/nodes/n/proxy/exec/ns/p/c", method: method))
        #expect(try Self.rejected(rawPath: "/api/v1/nodes/n/proxy/stats/summary", method: method) == false)
    }

    @Test func underACustomAPIPrefix() throws {
        let router = PathRouter(apiPrefix: "/k8s/")
        #expect(try Self.rejected(rawPath: "/k8s/api/v1/nodes/n/proxy/exec/ns/p/c", router: router))
        #expect(try Self.rejected(rawPath: "/k8s/api/v1/nodes/n/proxy/stats/summary", router: router) == false)
    }

    @Test func anExplicitRejectListReplacesTheDefault() throws {
        let filter = try RequestFilter(rejectPaths: "^/api/.*/pods/.*/exec")
        #expect(filter.accepts(method: "GET", path: "/api/v1/nodes/n/proxy/exec/ns/p/c", host: "localhost"))
    }
}
