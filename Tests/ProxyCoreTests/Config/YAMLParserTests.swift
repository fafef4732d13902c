import Testing

@testable import ProxyCore

/// The libyaml-based composer behind kubeconfig loading.
@Suite struct YAMLParserTests {
    private func compose(_ text: String) throws -> YAMLNode? { try YAMLParser.compose(Array(text.utf8)) }

    @Test func blockFlowAndJSONGiveTheSameTree() throws {
        let block = try compose("a: x\nb:\n- 1\n- two\nc: {d: 'q: r'}\n")
        let flow = try compose("{a: x, b: [1, two], c: {d: \"q: r\"}}")
        let json = try compose(#"{"a": "x", "b": [1, "two"], "c": {"d": "q: r"}}"#)
        #expect(block == flow && flow == json)
        #expect(block?["b"]?.sequence == [.scalar("1"), .scalar("two")])
        #expect(block?["c"]?["d"]?.scalar == "q: r")
        #expect(block?["missing"] == nil)
    }

    @Test func anchorsAndAliasesResolve() throws {
        let root = try compose("base: &ca {server: https://a}\ncopy: *ca\nlist: [&x one, *x]\n")
        #expect(root?["copy"] == root?["base"])
        #expect(root?["copy"]?["server"]?.scalar == "https://a")
        #expect(root?["list"]?.sequence == [.scalar("one"), .scalar("one")])
        #expect(throws: YAMLError.self) { try compose("a: *nope\n") }
    }

    @Test func scalarsKeepTheirText() throws {
        let root = try compose("t: |\n  line1\n  line2\nq: \"tab\\tend\"\nn: ~\ne:\nb: Yes\nk: \"true\"\n")
        #expect(root?["t"]?.scalar == "line1\nline2\n")
        #expect(root?["q"]?.scalar == "tab\tend")
        #expect(root?["n"]?.isNull == true && root?["e"]?.isNull == true)
        #expect(root?["b"]?.bool == true && root?["k"]?.bool == true)
        #expect(root?["t"]?.bool == nil)
    }

    @Test func emptyStreamAndErrors() throws {
        #expect(try compose("") == nil)
        #expect(try compose("# only a comment\n") == nil)
        let multi = #expect(throws: YAMLError.self) { try compose("a: 1\n---\nb: 2\n") }
        #expect(multi?.message.contains("expected a single document") == true)
        #expect(multi?.position == "line 2, column 1")
        let bad = #expect(throws: YAMLError.self) { try compose("a:\n  b: 1\n c: 2\n") }
        #expect(bad?.position == "line 3, column 2")
        #expect(bad?.message == "did not find expected key (while parsing a block mapping at line 1, column 1)")
        // Errors never quote the document (which could hold a secret).
        let secret = #expect(throws: YAMLError.self) { try compose("token: \"s3cret\n") }
        #expect(secret?.message.contains("s3cret") == false)
    }
}
