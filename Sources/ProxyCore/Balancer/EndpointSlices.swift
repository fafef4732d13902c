import FoundationEssentials

/// The parts of a `discovery.k8s.io/v1` EndpointSlice that say where apiservers listen. The apiservers keep the
/// `kubernetes` service's slices in `default` current themselves (each adds its advertise address while it runs).
struct EndpointSlice: Decodable, Equatable {
    struct Metadata: Decodable, Equatable {
        var name: String?
        var resourceVersion: String?
    }

    struct Endpoint: Decodable, Equatable {
        var addresses: [String]
        var conditions: Conditions?
    }

    struct Conditions: Decodable, Equatable {
        /// Absent means unknown, which consumers treat as ready (the API's documented rule).
        var ready: Bool?
    }

    struct Port: Decodable, Equatable {
        var name: String?
        var port: Int?
        var `protocol`: String?
    }

    var metadata: Metadata
    var addressType: String?
    var endpoints: [Endpoint]?
    var ports: [Port]?

    /// The ready endpoints' addresses at the slice's `https` port (or its only TCP port), in the slice's order.
    var serverAddresses: [ServerAddress] {
        let tcp = (ports ?? []).filter { ($0.protocol ?? "TCP") == "TCP" && $0.port != nil }
        guard let chosen = tcp.first(where: { $0.name == "https" }) ?? (tcp.count == 1 ? tcp.first : nil),
            let number = chosen.port, let port = UInt16(exactly: number), port > 0
        else { return [] }
        var out: [ServerAddress] = []
        for endpoint in endpoints ?? [] where endpoint.conditions?.ready != false {
            for address in endpoint.addresses {
                var host = Substring(address)
                if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
                let candidate = ServerAddress(host: String(host), port: port)
                // Only what parses back as a URL authority (no user info, paths or stray characters).
                guard case .success(let url) = ServerURL.parse("https://\(candidate.authority)", defaultTLS: true),
                    url.host == candidate.host, url.basePath.isEmpty, !out.contains(candidate)
                else { continue }
                out.append(candidate)
            }
        }
        return out
    }
}

/// The answer to a list of EndpointSlices.
struct EndpointSliceList: Decodable {
    struct Metadata: Decodable {
        var resourceVersion: String?
    }

    var metadata: Metadata?
    var items: [EndpointSlice]
}

/// One line of a watch of EndpointSlices.
enum EndpointSliceWatchEvent: Equatable {
    case upsert(EndpointSlice)
    case deleted(EndpointSlice)
    case bookmark(resourceVersion: String?)
    /// An `ERROR` event: a `Status` (410 Gone when the resourceVersion is too old: list again).
    case error(code: Int, message: String)

    private struct Envelope: Decodable {
        var type: String
    }

    private struct SliceEvent: Decodable {
        var object: EndpointSlice
    }

    private struct StatusEvent: Decodable {
        struct Status: Decodable {
            var code: Int?
            var message: String?
        }

        var object: Status
    }

    /// Parses one JSON line; nil when it is not a watch event this code understands.
    static func parse(_ line: [UInt8]) -> EndpointSliceWatchEvent? {
        let decoder = JSONDecoder()
        let data = Data(line)
        guard let envelope = try? decoder.decode(Envelope.self, from: data) else { return nil }
        switch envelope.type {
        case "ADDED", "MODIFIED":
            return (try? decoder.decode(SliceEvent.self, from: data)).map { .upsert($0.object) }
        case "DELETED":
            return (try? decoder.decode(SliceEvent.self, from: data)).map { .deleted($0.object) }
        case "BOOKMARK":
            return .bookmark(resourceVersion: (try? decoder.decode(SliceEvent.self, from: data))?.object.metadata.resourceVersion)
        case "ERROR":
            let status = (try? decoder.decode(StatusEvent.self, from: data))?.object
            return .error(code: status?.code ?? 0, message: status?.message ?? "")
        default:
            return nil
        }
    }
}

/// What discovery knows: the addresses per slice name, merged into one ordered list of servers.
struct DiscoveredServers: Equatable {
    private(set) var slices: [String: [ServerAddress]] = [:]

    mutating func replaceAll(_ items: [EndpointSlice]) {
        slices = [:]
        for slice in items { upsert(slice) }
    }

    mutating func upsert(_ slice: EndpointSlice) {
        slices[slice.metadata.name ?? ""] = slice.serverAddresses
    }

    mutating func delete(_ slice: EndpointSlice) {
        slices[slice.metadata.name ?? ""] = nil
    }

    /// Every address once, ordered by slice name, then as listed.
    var addresses: [ServerAddress] {
        var out: [ServerAddress] = []
        for name in slices.keys.sorted() {
            for address in slices[name] ?? [] where !out.contains(address) { out.append(address) }
        }
        return out
    }
}
