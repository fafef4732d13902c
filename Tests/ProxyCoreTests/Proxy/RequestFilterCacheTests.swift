import Testing

@testable import ProxyCore

@Suite struct RequestFilterCacheTests {
    /// The memo must give exactly the filter's answers, in every order and after it was emptied.
    @Test func cachedVerdictsEqualTheFilters() throws {
        let filter = try RequestFilter(rejectMethods: "^POST$")
        let cache = RequestFilterCache(filter: filter)
        let methods = ["GET", "POST", "post", "DELETE"]
        let paths = ["/api", "/api/v1/namespaces/a/pods/p/exec", "/api/v1/namespaces/a/pods/p/log", "/apis/x"]
        let hosts = ["localhost:8001", "evil.example", "[::1]:8001", "127.0.0.1", "LOCALHOST"]
        for round in 0..<3 {
            for m in methods {
                for p in paths {
                    for h in hosts {
                        #expect(cache.accepts(method: m, path: p, host: h) == filter.accepts(method: m, path: p, host: h),
                                "round \(round): \(m) \(p) \(h)")
                    }
                }
            }
        }
        // Overflow empties the memo without changing answers.
        for i in 0..<(RequestFilterCache.capacity + 10) {
            _ = cache.accepts(method: "GET", path: "/api/v1/namespaces/n\(i)/pods", host: "localhost")
        }
        #expect(cache.accepts(method: "GET", path: "/api", host: "evil.example") == false)
        #expect(cache.accepts(method: "GET", path: "/api", host: "localhost:1") == true)
    }
}
