/// The proxy from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (either case), used when the cluster sets no `proxy-url`:
/// client-go's default transport takes it from Go's `http.ProxyFromEnvironment` (golang.org/x/net/http/httpproxy)
/// with CIDR entries in `NO_PROXY`, so kubectl proxy honours it for its requests.
///
/// Rules, as httpproxy: `HTTPS_PROXY` for an `https` server, `HTTP_PROXY` for an `http` one, upper case first; a
/// value without a scheme means `http://`; `localhost` and loopback addresses are never proxied; `NO_PROXY` is a
/// comma-separated list of `*` (nothing is proxied), IP addresses, CIDR ranges, and domain names (`example.com`
/// matches it and its subdomains, `.example.com` and `*.example.com` only subdomains), each optionally with `:port`.
public enum EnvironmentProxy {
    /// - Returns: the proxy URL to use (normalised: scheme added, `socks5h` read as `socks5`, which already sends
    ///   host names to the proxy), or `nil` for a direct connection.
    /// - Throws: `ProxyURLError` for a value that is not a usable proxy URL (Go fails each request the same way).
    public static func proxyURL(scheme: String, host: String, port: UInt16, environment: [String: String])
        throws(ProxyURLError) -> String?
    {
        let names = scheme == "https" ? ["HTTPS_PROXY", "https_proxy"] : ["HTTP_PROXY", "http_proxy"]
        guard let raw = names.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else { return nil }
        let noProxy = ["NO_PROXY", "no_proxy"].lazy.compactMap { environment[$0] }.first { !$0.isEmpty } ?? ""
        guard useProxy(host: host.lowercased(), port: port, noProxy: noProxy) else { return nil }
        var url = raw
        if !url.containsText("://") { url = "http://" + url }
        if url.lowercased().hasPrefix("socks5h://") { url = "socks5://" + url.dropFirst("socks5h://".count) }
        if case .failure(let error) = ProxyEndpoint.parse(url) {
            throw ProxyURLError("invalid proxy address in \(names[0]): \(error.reason)")
        }
        return url
    }

    static func useProxy(host: String, port: UInt16, noProxy: String) -> Bool {
        if host == "localhost" { return false }
        let ip = Resolver.ipLiteralBytes(host)
        if let ip, isLoopback(ip) { return false }
        for rawEntry in noProxy.split(separator: ",") {
            var entry = rawEntry.trimmingSpaces().lowercased()
            if entry.isEmpty { continue }
            if entry == "*" { return false }
            if let slash = entry.firstIndex(of: "/") {
                // CIDR: matches IP hosts only.
                guard let ip, let bits = Int(entry[entry.index(after: slash)...]),
                    let network = Resolver.ipLiteralBytes(String(entry[..<slash])), network.count == ip.count,
                    bits >= 0, bits <= ip.count * 8
                else { continue }
                if prefixMatches(ip, network, bits: bits) { return false }
                continue
            }
            var entryPort: UInt16?
            if let colon = entry.lastIndex(of: ":"), Resolver.ipLiteralBytes(entry) == nil,
                let value = UInt16(entry[entry.index(after: colon)...])
            {
                entryPort = value
                entry = String(entry[..<colon])
            }
            if entry.hasPrefix("[") && entry.hasSuffix("]") { entry = String(entry.dropFirst().dropLast()) }
            if let entryPort, entryPort != port { continue }
            if let entryIP = Resolver.ipLiteralBytes(entry) {
                if let ip, ip == entryIP { return false }
                continue
            }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            if entry.hasPrefix(".") {
                if host.hasSuffix(entry) { return false }
            } else if host == entry || host.hasSuffix("." + entry) {
                return false
            }
        }
        return true
    }

    private static func isLoopback(_ ip: [UInt8]) -> Bool {
        if ip.count == 4 { return ip[0] == 127 }
        if ip == [UInt8](repeating: 0, count: 15) + [1] { return true }
        // IPv4-mapped loopback (::ffff:127.x.x.x).
        return ip[0..<10].allSatisfy { $0 == 0 } && ip[10] == 0xFF && ip[11] == 0xFF && ip[12] == 127
    }

    private static func prefixMatches(_ a: [UInt8], _ b: [UInt8], bits: Int) -> Bool {
        var remaining = bits
        for index in 0..<a.count where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if a[index] & mask != b[index] & mask { return false }
            remaining -= take
        }
        return true
    }
}
