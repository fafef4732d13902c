import Testing

@testable import ProxyCore

@Suite struct GoDurationTests {
    @Test(arguments: [
        ("0", Duration.zero), ("0s", .zero), ("30s", .seconds(30)), ("1m30s", .seconds(90)), ("500ms", .milliseconds(500)),
        ("-1s", .seconds(-1)), ("1.5h", .seconds(5400)), ("2us", .microseconds(2)),
    ])
    func parsesGoDurations(text: String, expected: Duration) {
        #expect(GoDuration.parse(text) == expected)
    }

    @Test(arguments: ["", "5", "s", "1x", "1s2", "--1s"])
    func rejectsWhatGoRejects(text: String) {
        #expect(GoDuration.parse(text) == nil)
    }
}
