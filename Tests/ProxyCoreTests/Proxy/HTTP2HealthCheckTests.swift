import Testing

@testable import ProxyCore

/// client-go's HTTP/2 transport environment variables.
@Suite struct HTTP2HealthCheckTests {
    @Test(arguments: [
        ([String: String](), HTTP2HealthCheck(readIdle: .seconds(30), pingTimeout: .seconds(15)), 0),
        (["HTTP2_READ_IDLE_TIMEOUT_SECONDS": "5", "HTTP2_PING_TIMEOUT_SECONDS": "2"],
         HTTP2HealthCheck(readIdle: .seconds(5), pingTimeout: .seconds(2)), 0),
        (["HTTP2_READ_IDLE_TIMEOUT_SECONDS": "0"], HTTP2HealthCheck(readIdle: nil, pingTimeout: .seconds(15)), 0),
        (["HTTP2_READ_IDLE_TIMEOUT_SECONDS": "5s", "HTTP2_PING_TIMEOUT_SECONDS": "x"],
         HTTP2HealthCheck(readIdle: .seconds(30), pingTimeout: .seconds(15)), 2),
        (["HTTP2_READ_IDLE_TIMEOUT_SECONDS": ""], HTTP2HealthCheck(), 0),
    ])
    func environment(env: [String: String], expected: HTTP2HealthCheck, warningCount: Int) {
        let (check, warnings) = HTTP2HealthCheck.fromEnvironment(env)
        #expect(check == expected)
        #expect(warnings.count == warningCount)
        if warningCount > 0 { #expect(warnings[0].hasPrefix("Illegal HTTP2_READ_IDLE_TIMEOUT_SECONDS(\"5s\")")) }
    }
}
