import Foundation
import Testing
@testable import ProxyCore

@Suite struct ProxyEndpointTests {
    @Test func parsesSchemesDefaultPortsAndUserInfo() throws {
        let http = try ProxyEndpoint.parse("http://proxy.test").get()
        #expect(http == ProxyEndpoint(kind: .http, host: "proxy.test", port: 80))
        let https = try ProxyEndpoint.parse("HTTPS://proxy.test/").get()
        #expect(https == ProxyEndpoint(kind: .https, host: "proxy.test", port: 443))
        let socks = try ProxyEndpoint.parse("socks5://[::1]").get()
        #expect(socks == ProxyEndpoint(kind: .socks5, host: "::1", port: 1080))
        #expect(socks.authority == "[::1]:1080")
        let withUser = try ProxyEndpoint.parse("http://al%40ice:p%3Ass:w@127.0.0.1:3128").get()
        #expect(withUser == ProxyEndpoint(kind: .http, host: "127.0.0.1", port: 3128, username: "al@ice", password: "p:ss:w"))
        #expect(withUser.description == "http://127.0.0.1:3128")
        let userOnly = try ProxyEndpoint.parse("socks5://bob@h:1").get()
        #expect(userOnly.username == "bob" && userOnly.password == nil)
    }

    @Test func rejectsWithoutEchoingCredentials() {
        for (text, reason) in [
            ("ftp://u:secret@p", "unsupported scheme \"ftp\", must be http, https, or socks5"),
            ("proxy:3128", "not a URL (want http, https or socks5)"),
            ("http://u:secret@:3128", "missing host"),
            ("http://u:secret@p:0", "invalid port"),
            ("http://u:secret@p:99999", "invalid port"),
            ("http://u:sec%zzret@p", "invalid percent-encoding in the user information"),
            ("http://::1:80", "IPv6 address must be enclosed in brackets"),
        ] {
            guard case .failure(let error) = ProxyEndpoint.parse(text) else {
                Issue.record("\(text) accepted")
                continue
            }
            #expect(error.reason == reason)
            #expect(!error.reason.contains("secret"))
        }
    }
}

@Suite struct ProxyHandshakeTests {
    static let http = ProxyEndpoint(kind: .http, host: "127.0.0.1", port: 3128)

    private func text(_ progress: ProxyHandshake.Progress) -> String? {
        guard case .needsInput(let send) = progress else { return nil }
        return String(decoding: send, as: UTF8.self)
    }

    @Test func connectRequestWithoutAndWithCredentials() {
        var plain = ProxyHandshake(endpoint: Self.http, targetHost: "api.example", targetPort: 6443)
        #expect(text(plain.start()) == "CONNECT api.example:6443 HTTP/1.1\r\nHost: api.example:6443\r\n\r\n")

        var endpoint = Self.http
        endpoint.username = "alice"
        endpoint.password = "s3cret:x"
        var authed = ProxyHandshake(endpoint: endpoint, targetHost: "::1", targetPort: 443)
        let expectedAuth = "Basic " + Data("alice:s3cret:x".utf8).base64EncodedString()
        #expect(text(authed.start()) == "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: \(expectedAuth)\r\n\r\n")
    }

    @Test func connect200KeepsBytesAfterTheHead() {
        var handshake = ProxyHandshake(endpoint: Self.http, targetHost: "h", targetPort: 1)
        _ = handshake.start()
        // The head arrives split, and the first apiserver bytes come with its end.
        #expect(handshake.receive(Array("HTTP/1.1 200 Connection est".utf8)[...]) == .needsInput(send: []))
        let tail = Array("ablished\r\nVia: test\r\n\r\n".utf8) + [0x16, 0x03, 0x01]
        #expect(handshake.receive(tail[...]) == .established(leftover: [0x16, 0x03, 0x01]))
    }

    @Test func connect2xxOtherThan200IsATunnel() {
        var handshake = ProxyHandshake(endpoint: Self.http, targetHost: "h", targetPort: 1)
        _ = handshake.start()
        #expect(handshake.receive(Array("HTTP/1.0 204 No Content\r\n\r\n".utf8)[...]) == .established(leftover: []))
    }

    @Test func connectRefusals() {
        for (answer, message) in [
            ("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
             "proxyconnect tcp 127.0.0.1:3128: the proxy answered CONNECT with 407 Proxy Authentication Required"),
            ("HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!",
             "proxyconnect tcp 127.0.0.1:3128: the proxy answered CONNECT with 403 Forbidden"),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n",
             "proxyconnect tcp 127.0.0.1:3128: the proxy answered CONNECT with 101 Switching Protocols"),
        ] {
            var handshake = ProxyHandshake(endpoint: Self.http, targetHost: "h", targetPort: 1)
            _ = handshake.start()
            #expect(handshake.receive(Array(answer.utf8)[...]) == .failed(message))
        }
    }

    @Test func malformedConnectAnswer() {
        var handshake = ProxyHandshake(endpoint: Self.http, targetHost: "h", targetPort: 1)
        _ = handshake.start()
        guard case .failed(let why) = handshake.receive(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)[...]) else {
            Issue.record("accepted a non-HTTP answer")
            return
        }
        #expect(why.hasPrefix("proxyconnect tcp 127.0.0.1:3128: "))
        #expect(handshake.closedByProxy() == "proxyconnect tcp 127.0.0.1:3128: the proxy closed the connection before answering CONNECT")
    }

    @Test func connectAnswerHeadIsBounded() {
        var handshake = ProxyHandshake(endpoint: Self.http, targetHost: "h", targetPort: 1)
        _ = handshake.start()
        _ = handshake.receive(Array("HTTP/1.1 200 OK\r\n".utf8)[...])
        var last = ProxyHandshake.Progress.needsInput(send: [])
        let field = Array("X-Filler: \(String(repeating: "a", count: 1000))\r\n".utf8)
        for _ in 0..<2000 {
            last = handshake.receive(field[...])
            if case .failed = last { break }
        }
        guard case .failed = last else {
            Issue.record("2 MB of header fields accepted")
            return
        }
    }

    // MARK: SOCKS5

    static let socks = ProxyEndpoint(kind: .socks5, host: "127.0.0.1", port: 1080)

    private func bytes(_ progress: ProxyHandshake.Progress) -> [UInt8]? {
        guard case .needsInput(let send) = progress else { return nil }
        return send
    }

    @Test func socksNoAuthDomainTarget() {
        var handshake = ProxyHandshake(endpoint: Self.socks, targetHost: "api.test", targetPort: 6443)
        #expect(bytes(handshake.start()) == [5, 1, 0])
        let request: [UInt8] = [5, 1, 0, 3, 8] + Array("api.test".utf8) + [0x19, 0x2B]
        #expect(bytes(handshake.receive([5, 0][...])) == request)
        // Reply split: bound address is a domain; bytes after the reply belong to the apiserver.
        #expect(handshake.receive([5, 0, 0, 3][...]) == .needsInput(send: []))
        #expect(handshake.receive([3, 0x61, 0x62, 0x63, 0, 80, 0x16][...]) == .established(leftover: [0x16]))
    }

    @Test func socksIPTargets() {
        var v4 = ProxyHandshake(endpoint: Self.socks, targetHost: "127.0.0.1", targetPort: 443)
        _ = v4.start()
        #expect(bytes(v4.receive([5, 0][...])) == [5, 1, 0, 1, 127, 0, 0, 1, 1, 0xBB])
        #expect(v4.receive([5, 0, 0, 1, 10, 0, 0, 1, 0x12, 0x34][...]) == .established(leftover: []))

        var v6 = ProxyHandshake(endpoint: Self.socks, targetHost: "::1", targetPort: 443)
        _ = v6.start()
        #expect(bytes(v6.receive([5, 0][...])) == [5, 1, 0, 4] + [UInt8](repeating: 0, count: 15) + [1, 1, 0xBB])
        #expect(v6.receive([5, 0, 0, 4] + [UInt8](repeating: 0, count: 16) + [0, 1]) == .established(leftover: []))
    }

    @Test func socksUsernamePassword() {
        var endpoint = Self.socks
        endpoint.username = "user"
        endpoint.password = "pw"
        var handshake = ProxyHandshake(endpoint: endpoint, targetHost: "10.0.0.1", targetPort: 80)
        #expect(bytes(handshake.start()) == [5, 2, 0, 2])
        #expect(bytes(handshake.receive([5, 2][...])) == [1, 4] + Array("user".utf8) + [2] + Array("pw".utf8))
        #expect(bytes(handshake.receive([1, 0][...])) == [5, 1, 0, 1, 10, 0, 0, 1, 0, 80])
        #expect(handshake.receive([5, 0, 0, 1, 0, 0, 0, 0, 0, 0][...]) == .established(leftover: []))

        // The proxy may still pick "no authentication" when offered both.
        var noAuth = ProxyHandshake(endpoint: endpoint, targetHost: "10.0.0.1", targetPort: 80)
        _ = noAuth.start()
        #expect(bytes(noAuth.receive([5, 0][...])) == [5, 1, 0, 1, 10, 0, 0, 1, 0, 80])
    }

    @Test func socksFailures() {
        let prefix = "socks connect tcp 127.0.0.1:1080->h.test:80: "
        var endpoint = Self.socks
        endpoint.username = "user"
        endpoint.password = "wrong"

        var badPassword = ProxyHandshake(endpoint: endpoint, targetHost: "h.test", targetPort: 80)
        _ = badPassword.start()
        _ = badPassword.receive([5, 2][...])
        #expect(badPassword.receive([1, 1][...]) == .failed(prefix + "username/password authentication failed"))

        var noMethod = ProxyHandshake(endpoint: Self.socks, targetHost: "h.test", targetPort: 80)
        _ = noMethod.start()
        #expect(noMethod.receive([5, 0xFF][...]) == .failed(prefix + "no acceptable authentication methods"))

        // Password auth chosen although not offered.
        var unoffered = ProxyHandshake(endpoint: Self.socks, targetHost: "h.test", targetPort: 80)
        _ = unoffered.start()
        #expect(unoffered.receive([5, 2][...]) == .failed(prefix + "unsupported authentication method 2"))

        var wrongVersion = ProxyHandshake(endpoint: Self.socks, targetHost: "h.test", targetPort: 80)
        _ = wrongVersion.start()
        #expect(wrongVersion.receive([4, 0][...]) == .failed(prefix + "unexpected protocol version 4"))

        for (code, text) in [(1, "general SOCKS server failure"), (2, "connection not allowed by ruleset"),
                             (5, "connection refused"), (8, "address type not supported"), (42, "unknown code 42")] {
            var refused = ProxyHandshake(endpoint: Self.socks, targetHost: "h.test", targetPort: 80)
            _ = refused.start()
            _ = refused.receive([5, 0][...])
            #expect(refused.receive([5, UInt8(code), 0, 1, 0, 0, 0, 0, 0, 0][...]) == .failed(prefix + text))
        }
        #expect(ProxyHandshake(endpoint: Self.socks, targetHost: "h.test", targetPort: 80).closedByProxy()
            == prefix + "the proxy closed the connection during the SOCKS5 handshake")
    }
}

@Suite struct EnvironmentProxyTests {
    private func proxy(_ env: [String: String], scheme: String = "https", host: String = "api.example.com",
                       port: UInt16 = 6443) throws -> String? {
        try EnvironmentProxy.proxyURL(scheme: scheme, host: host, port: port, environment: env)
    }

    @Test func variableBySchemeUpperCaseFirstAndSchemeDefault() throws {
        #expect(try proxy([:]) == nil)
        #expect(try proxy(["HTTPS_PROXY": "http://p:3128"]) == "http://p:3128")
        #expect(try proxy(["https_proxy": "p:3128"]) == "http://p:3128")
        #expect(try proxy(["HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"]) == "http://upper:1")
        #expect(try proxy(["HTTP_PROXY": "http://p:3128"]) == nil)
        #expect(try proxy(["HTTP_PROXY": "http://p:3128"], scheme: "http") == "http://p:3128")
        #expect(try proxy(["HTTPS_PROXY": "socks5h://u:pw@s:1080"]) == "socks5://u:pw@s:1080")
        #expect(try proxy(["HTTPS_PROXY": ""]) == nil)
    }

    @Test func loopbackIsNeverProxied() throws {
        let env = ["HTTPS_PROXY": "http://p:3128"]
        for host in ["localhost", "127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"] {
            #expect(try proxy(env, host: host) == nil, "\(host)")
        }
        #expect(try proxy(env, host: "10.0.0.1") == "http://p:3128")
    }

    @Test func noProxyEntries() throws {
        func proxied(_ noProxy: String, _ host: String, port: UInt16 = 6443) throws -> Bool {
            try proxy(["HTTPS_PROXY": "http://p:3128", "NO_PROXY": noProxy], host: host, port: port) != nil
        }
        #expect(try !proxied("*", "api.example.com"))
        #expect(try !proxied("example.com", "api.example.com"))
        #expect(try !proxied("example.com", "example.com"))
        #expect(try proxied("example.com", "badexample.com"))
        #expect(try !proxied(".example.com", "api.example.com"))
        #expect(try proxied(".example.com", "example.com"))
        #expect(try !proxied("*.example.com", "api.example.com"))
        #expect(try !proxied(" other.org , API.Example.com ", "api.example.com"))
        #expect(try !proxied("example.com:6443", "api.example.com"))
        #expect(try proxied("example.com:443", "api.example.com"))
        #expect(try !proxied("10.0.0.0/8", "10.1.2.3"))
        #expect(try proxied("10.0.0.0/8", "11.1.2.3"))
        #expect(try !proxied("10.1.2.3", "10.1.2.3"))
        #expect(try !proxied("fd00::/8", "fd12::1"))
        #expect(try proxied("fd00::/8", "fe80::1"))
        #expect(try proxied("10.0.0.0/8", "api.example.com"))
        #expect(try proxied("x", "api.example.com"))
        #expect(try proxy(["HTTPS_PROXY": "http://p:3128", "no_proxy": "example.com"], host: "api.example.com") == nil)
    }

    @Test func invalidValueIsAnErrorWithoutCredentials() {
        #expect(throws: ProxyURLError.self) { try proxy(["HTTPS_PROXY": "ftp://u:secret@p"]) }
        do {
            _ = try proxy(["HTTPS_PROXY": "http://u:secret@p:notaport"])
            Issue.record("accepted")
        } catch {
            #expect((error as? ProxyURLError)?.reason == "invalid proxy address in HTTPS_PROXY: invalid port")
        }
    }
}
