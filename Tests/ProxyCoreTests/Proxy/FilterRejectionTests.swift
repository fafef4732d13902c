import Testing

@testable import ProxyCore

/// Which filter refused a request (for `proxyd_filter_rejections_total`), in kubectl's order of checks; the cached
/// filter gives the same answers.
@Suite struct FilterRejectionTests {
    @Test(arguments: [
        ("GET", "/api/v1/pods", "localhost", nil),
        ("GET", "/api/v1/pods", "evil.example", FilterRejection.host),
        ("GET", "/api/v1/namespaces/d/pods/p/exec", "localhost", .path),
        ("DELETE", "/api/v1/pods", "localhost", .method),
        ("DELETE", "/api/v1/namespaces/d/pods/p/exec", "evil.example", .path),  // reject-paths comes first
        ("GET", "/metrics", "localhost", .path),  // not under --accept-paths
        ("DELETE", "/metrics", "localhost", .method),  // reject-methods before accept-paths
    ] as [(String, String, String, FilterRejection?)])
    func rejection(_ method: String, _ path: String, _ host: String, _ expected: FilterRejection?) throws {
        let filter = try RequestFilter(acceptPaths: "^/api", rejectMethods: "^DELETE$")
        #expect(filter.rejection(method: method, path: path, host: host) == expected)
        let cache = RequestFilterCache(filter: filter)
        #expect(cache.rejection(method: method, path: path, host: host) == expected)
        #expect(cache.rejection(method: method, path: path, host: host) == expected)  // memoized
        #expect(filter.accepts(method: method, path: path, host: host) == (expected == nil))
    }
}
