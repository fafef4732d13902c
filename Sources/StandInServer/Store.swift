import Foundation

/// The resources the stand-in stores. Everything lives in memory and disappears with the process.
enum Resource: String, Sendable, CaseIterable {
    case pods
    case configmaps
    case namespaces
    case services
    case deployments

    var kind: String {
        switch self {
        case .pods: "Pod"
        case .configmaps: "ConfigMap"
        case .namespaces: "Namespace"
        case .services: "Service"
        case .deployments: "Deployment"
        }
    }

    var singular: String {
        switch self {
        case .pods: "pod"
        case .configmaps: "configmap"
        case .namespaces: "namespace"
        case .services: "service"
        case .deployments: "deployment"
        }
    }

    var apiVersion: String {
        self == .deployments ? "apps/v1" : "v1"
    }

    var shortNames: [String] {
        switch self {
        case .pods: ["po"]
        case .configmaps: ["cm"]
        case .namespaces: ["ns"]
        case .services: ["svc"]
        case .deployments: ["deploy"]
        }
    }

    var namespaced: Bool { self != .namespaces }
}

/// A watch event as it goes on the wire: one JSON object and a newline.
struct WatchEvent: Sendable {
    var type: String
    var object: JSON
    var resourceVersion: Int

    var line: String {
        JSON.obj(["type": .string(type), "object": object]).serialized + "\n"
    }
}

enum StoreError: Error {
    case alreadyExists(Resource, String)
    case notFound(Resource, String)
    case invalid(String)
}

/// In-memory object store with an incrementing resourceVersion, live watchers and a short event history, so that a
/// watch started with the resourceVersion of a list misses nothing that happened in between (as `kubectl get -w`
/// does: list, then watch from the list's resourceVersion).
final class ObjectStore: Sendable {
    struct Watcher: Sendable {
        var resource: Resource
        var namespace: String?
        var deliver: @Sendable (WatchEvent) -> Void
    }

    private struct State {
        var resourceVersion = 1
        /// The last address handed out in 10.96.0.0/16 (services get cluster IPs in order; 10.96.0.1 is reserved
        /// for the `kubernetes` service).
        var lastClusterIP = 1
        var objects: [Resource: [String: JSON]] = [:]
        var watchers: [Int: Watcher] = [:]
        var nextWatcherID = 1
        var history: [(resource: Resource, namespace: String?, event: WatchEvent)] = []
    }

    private static let historyLimit = 4096
    private let state = Locked(State())

    init(initialNamespaces: [String] = ["default", "kube-system", "kube-public", "big"]) {
        for name in initialNamespaces {
            _ = try? self.create(.namespaces, namespace: nil, body: .obj(["metadata": .obj(["name": .string(name)])]))
        }
    }

    var currentResourceVersion: Int {
        state.withLock { $0.resourceVersion }
    }

    private static func key(_ namespace: String?, _ name: String) -> String {
        "\(namespace ?? "")/\(name)"
    }

    func list(_ resource: Resource, namespace: String?) -> (items: [JSON], resourceVersion: Int) {
        state.withLock { state in
            let all = state.objects[resource] ?? [:]
            let items = all.sorted { $0.key < $1.key }.map(\.value).filter { object in
                namespace == nil || object["metadata"]?["namespace"]?.stringValue == namespace
            }
            return (items, state.resourceVersion)
        }
    }

    func get(_ resource: Resource, namespace: String?, name: String) -> JSON? {
        state.withLock { $0.objects[resource]?[Self.key(namespace, name)] }
    }

    /// Creates an object from a request body. Namespaced objects in a namespace that does not exist yet create that
    /// namespace too (a convenience a real apiserver does not offer).
    @discardableResult
    func create(_ resource: Resource, namespace: String?, body: JSON) throws -> JSON {
        guard body.isObject else { throw StoreError.invalid("the body must be a JSON object") }
        guard let name = body["metadata"]?["name"]?.stringValue, !name.isEmpty else {
            throw StoreError.invalid("metadata.name: Required value: name is required")
        }
        if let bodyNamespace = body["metadata"]?["namespace"]?.stringValue, let namespace, bodyNamespace != namespace {
            throw StoreError.invalid("the namespace of the object (\(bodyNamespace)) does not match the namespace on the request (\(namespace))")
        }
        let namespace = resource.namespaced ? (namespace ?? "default") : nil
        let created = Date().ISO8601Format()
        return try state.withLock { state in
            let key = Self.key(namespace, name)
            if state.objects[resource]?[key] != nil { throw StoreError.alreadyExists(resource, name) }
            if let namespace, state.objects[.namespaces]?[Self.key(nil, namespace)] == nil {
                var ns = Self.skeleton(.namespaces, name: namespace, namespace: nil, state: &state, created: created)
                ns["spec"] = .obj(["finalizers": .array([.string("kubernetes")])])
                ns["status"] = .obj(["phase": .string("Active")])
                Self.insert(.namespaces, key: Self.key(nil, namespace), object: ns, state: &state)
            }
            var object = Self.skeleton(resource, name: name, namespace: namespace, state: &state, created: created)
            if let labels = body["metadata"]?["labels"] { object["metadata"]?["labels"] = labels }
            if let annotations = body["metadata"]?["annotations"] { object["metadata"]?["annotations"] = annotations }
            switch resource {
            case .pods:
                object["spec"] = body["spec"] ?? .obj([
                    "containers": .array([.obj(["name": .string("main"), "image": .string("standin/pause:1")])])
                ])
                object["status"] = body["status"] ?? .obj(["phase": .string("Running")])
            case .configmaps:
                if let data = body["data"] { object["data"] = data }
            case .namespaces:
                object["spec"] = .obj(["finalizers": .array([.string("kubernetes")])])
                object["status"] = .obj(["phase": .string("Active")])
            case .services:
                object["spec"] = try Self.serviceSpec(body["spec"] ?? .obj([:]), state: &state)
                object["status"] = .obj(["loadBalancer": .obj([:])])
            case .deployments:
                object["spec"] = body["spec"] ?? .obj(["replicas": .int(1)])
                object["status"] = body["status"] ?? .obj([:])
            }
            Self.insert(resource, key: key, object: object, state: &state)
            return object
        }
    }

    func delete(_ resource: Resource, namespace: String?, name: String) throws -> JSON {
        try state.withLock { state in
            let key = Self.key(resource.namespaced ? namespace : nil, name)
            guard var object = state.objects[resource]?.removeValue(forKey: key) else {
                throw StoreError.notFound(resource, name)
            }
            state.resourceVersion += 1
            object["metadata"]?["resourceVersion"] = .string(String(state.resourceVersion))
            Self.publish(
                WatchEvent(type: "DELETED", object: object, resourceVersion: state.resourceVersion),
                resource: resource,
                namespace: resource.namespaced ? namespace : nil,
                state: &state
            )
            return object
        }
    }

    /// Registers a watcher. Returns its id and the events that must be sent first: ADDED for every existing object
    /// when `sinceResourceVersion` is nil or 0, otherwise the remembered events newer than it. Later events go to
    /// `deliver`, which is called with the store's lock held (it must only enqueue).
    func watch(
        _ resource: Resource,
        namespace: String?,
        sinceResourceVersion: Int?,
        deliver: @escaping @Sendable (WatchEvent) -> Void
    ) -> (id: Int, initial: [WatchEvent]) {
        state.withLock { state in
            var initial: [WatchEvent] = []
            if let since = sinceResourceVersion, since > 0 {
                initial = state.history.filter { entry in
                    entry.resource == resource && entry.event.resourceVersion > since
                        && (namespace == nil || entry.namespace == namespace)
                }.map(\.event)
            } else {
                let all = state.objects[resource] ?? [:]
                for (_, object) in all.sorted(by: { $0.key < $1.key })
                where namespace == nil || object["metadata"]?["namespace"]?.stringValue == namespace {
                    let rv = Int(object["metadata"]?["resourceVersion"]?.stringValue ?? "") ?? 0
                    initial.append(WatchEvent(type: "ADDED", object: object, resourceVersion: rv))
                }
            }
            let id = state.nextWatcherID
            state.nextWatcherID += 1
            state.watchers[id] = Watcher(resource: resource, namespace: namespace, deliver: deliver)
            return (id, initial)
        }
    }

    func unwatch(_ id: Int) {
        _ = state.withLock { $0.watchers.removeValue(forKey: id) }
    }

    var watcherCount: Int {
        state.withLock { $0.watchers.count }
    }

    // MARK: Helpers (lock held)

    /// A Service spec as the apiserver stores it: `type` defaults to ClusterIP, a cluster IP is allocated unless one is
    /// given, every port gets `protocol: TCP` and a `targetPort` (the port itself) when they are missing.
    private static func serviceSpec(_ given: JSON, state: inout State) throws -> JSON {
        guard given.isObject else { throw StoreError.invalid("spec: must be an object") }
        var spec = given
        if spec["type"] == nil { spec["type"] = .string("ClusterIP") }
        if spec["clusterIP"] == nil {
            state.lastClusterIP += 1
            let n = state.lastClusterIP
            spec["clusterIP"] = .string("10.96.\(n / 250).\(n % 250)")
        }
        if let clusterIP = spec["clusterIP"], spec["clusterIPs"] == nil { spec["clusterIPs"] = .array([clusterIP]) }
        guard case .array(let ports) = spec["ports"] ?? .array([]) else { throw StoreError.invalid("spec.ports: must be a list") }
        var normalized: [JSON] = []
        for (index, port) in ports.enumerated() {
            guard case .int = port["port"] ?? .null else {
                throw StoreError.invalid("spec.ports[\(index)].port: Required value")
            }
            var port = port
            if port["protocol"] == nil { port["protocol"] = .string("TCP") }
            if port["targetPort"] == nil { port["targetPort"] = port["port"] }
            normalized.append(port)
        }
        if ports.count > 1, normalized.contains(where: { ($0["name"]?.stringValue ?? "").isEmpty }) {
            throw StoreError.invalid("spec.ports: Required value: every port of a multi-port service needs a name")
        }
        spec["ports"] = .array(normalized)
        if spec["sessionAffinity"] == nil { spec["sessionAffinity"] = .string("None") }
        return spec
    }

    private static func skeleton(
        _ resource: Resource,
        name: String,
        namespace: String?,
        state: inout State,
        created: String
    ) -> JSON {
        state.resourceVersion += 1
        var metadata: JSON = .obj(["name": .string(name)])
        if let namespace { metadata["namespace"] = .string(namespace) }
        metadata["uid"] = .string(UUID().uuidString.lowercased())
        metadata["resourceVersion"] = .string(String(state.resourceVersion))
        metadata["creationTimestamp"] = .string(created)
        return .obj(["kind": .string(resource.kind), "apiVersion": .string(resource.apiVersion), "metadata": metadata])
    }

    private static func insert(_ resource: Resource, key: String, object: JSON, state: inout State) {
        state.objects[resource, default: [:]][key] = object
        let rv = Int(object["metadata"]?["resourceVersion"]?.stringValue ?? "") ?? state.resourceVersion
        publish(
            WatchEvent(type: "ADDED", object: object, resourceVersion: rv),
            resource: resource,
            namespace: object["metadata"]?["namespace"]?.stringValue,
            state: &state
        )
    }

    private static func publish(_ event: WatchEvent, resource: Resource, namespace: String?, state: inout State) {
        state.history.append((resource, namespace, event))
        if state.history.count > historyLimit { state.history.removeFirst(state.history.count - historyLimit) }
        for watcher in state.watchers.values
        where watcher.resource == resource && (watcher.namespace == nil || watcher.namespace == namespace) {
            watcher.deliver(event)
        }
    }
}
