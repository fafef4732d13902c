import Testing

@testable import ProxyCore

/// Regressions found by the `host` fuzz target (scripts/fuzz, docs/reliability.md § Fuzzing), with the inputs.
@Suite struct PathRouterFuzzFindingsTests {
    /// `cleanPath` split the decoded path on Characters. `/` followed by U+0301 (a combining mark, `%CC%81`) is one
    /// Character, so the `..` before it was not seen as a segment, and `/api/v1/../%CC%81x` was forwarded to the
    /// apiserver with its `..` (which splits on bytes, as Go does). Fuzz input: `\x01/api/v1/../\xcc\x81x`.
    @Test(arguments: [
        ("/", "/api/v1/../%CC%81x", "/api/%CC%81x"),
        ("/", "/api/v1/namespaces/ns/pods/p/../%CC%81/exec", "/api/v1/namespaces/ns/pods/%CC%81/exec"),
        ("/custom/", "/custom/../%CC%81x", "/%CC%81x"),
        ("/", "/a/./%CC%81", "/a/%CC%81"),
    ])
    func combiningMarkAfterSlashDoesNotHideADotSegment(prefix: String, rawPath: String, location: String) {
        #expect(PathRouter(apiPrefix: prefix).route(rawPath: rawPath, rawQuery: nil) == .redirect(location: location))
    }

    @Test func cleanPathSplitsOnTheSlashByte() {
        #expect(PathRouter.cleanPath("/a/../\u{301}x") == "/\u{301}x")
        #expect(PathRouter.cleanPath("/a/..\u{301}/b") == "/a/..\u{301}/b")  // "..́" is a name, not a dot segment
        #expect(PathRouter.cleanPath("/\u{301}/") == "/\u{301}/")
        #expect(PathRouter.cleanPath("/a/\u{301}") == "/a/\u{301}")
    }
}
