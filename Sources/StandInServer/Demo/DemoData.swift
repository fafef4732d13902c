/// The demo's sample data (`StandInConfiguration.demo`, `standin-apiserver --demo`): a cluster with a few namespaces,
/// pods and services, one of them backed by the demo dashboard.
///
/// - `demo`: the pod `dashboard-7c9d8f6b5-x2k4q` (labels `app=dashboard`, podIP 127.0.0.1, container ports `http`
///   and `https` = the dashboard's two loopback ports); the service `dashboard` (one unnamed port 80 → `http`), so
///   `/api/v1/namespaces/demo/services/dashboard/proxy/` and `dashboard.demo.svc.localhost` reach it; the service
///   `dashboard-tls` (port `https` 443 → `https`, for `https:dashboard-tls:443`); the service `api` (ports `http`
///   80 and `metrics` 9090) with pods on cluster IPs, which the stand-in answers with its echo.
/// - `monitoring`: services `prometheus` and `grafana` (echo).
/// - `restricted`: the service `vault`, but the user may not list services there (403, as RBAC answers; and so
///   not across all namespaces either).
/// - `default`: the `kubernetes` service, as in every cluster.
enum DemoData {
    static let namespace = "demo"
    static let dashboardPod = "dashboard-7c9d8f6b5-x2k4q"
    static let forbidden = [
        ForbiddenRule(verb: "list", resource: "services", namespace: "restricted"),
        ForbiddenRule(verb: "watch", resource: "services", namespace: "restricted"),
    ]

    static func load(into store: ObjectStore, dashboard: DemoDashboard) throws {
        func port(_ name: String?, _ number: Int, target: JSON? = nil) -> JSON {
            var port: JSON = .obj(["port": .int(number), "targetPort": target ?? .int(number), "protocol": .string("TCP")])
            if let name { port["name"] = .string(name) }
            return port
        }
        func containerPort(_ name: String, _ number: Int) -> JSON {
            .obj(["name": .string(name), "containerPort": .int(number), "protocol": .string("TCP")])
        }
        func pod(_ namespace: String, _ name: String, app: String, ip: String, ports: [JSON]) throws {
            var container: JSON = .obj(["name": .string(app), "image": .string("standin/\(app):1")])
            if !ports.isEmpty { container["ports"] = .array(ports) }
            try store.create(.pods, namespace: namespace, body: .obj([
                "metadata": .obj(["name": .string(name), "labels": .obj(["app": .string(app)])]),
                "spec": .obj(["containers": .array([container])]),
                "status": .obj(["phase": .string("Running"), "podIP": .string(ip), "podIPs": .array([.obj(["ip": .string(ip)])])]),
            ]))
        }
        func service(_ namespace: String, _ name: String, app: String?, ports: [JSON], clusterIP: String? = nil) throws {
            var spec: JSON = .obj(["ports": .array(ports)])
            if let app { spec["selector"] = .obj(["app": .string(app)]) }
            if let clusterIP { spec["clusterIP"] = .string(clusterIP) }
            var labels: JSON = .obj([:])
            if let app { labels["app"] = .string(app) }
            try store.create(.services, namespace: namespace, body: .obj([
                "metadata": .obj(["name": .string(name), "labels": labels]), "spec": spec,
            ]))
        }

        try service("default", "kubernetes", app: nil, ports: [port("https", 443, target: .int(6443))], clusterIP: "10.96.0.1")

        try pod(namespace, dashboardPod, app: "dashboard", ip: "127.0.0.1", ports: [
            containerPort("http", dashboard.httpPort), containerPort("https", dashboard.httpsPort),
        ])
        try pod(namespace, "api-5d8c7b9f4-7hx2m", app: "api", ip: "10.244.0.12", ports: [
            containerPort("http", 8080), containerPort("metrics", 9090),
        ])
        try pod(namespace, "worker-0", app: "worker", ip: "10.244.0.13", ports: [])
        try service(namespace, "dashboard", app: "dashboard", ports: [port(nil, 80, target: .string("http"))])
        try service(namespace, "dashboard-tls", app: "dashboard", ports: [port("https", 443, target: .string("https"))])
        try service(namespace, "api", app: "api", ports: [port("http", 80, target: .int(8080)), port("metrics", 9090, target: .string("metrics"))])

        try pod("monitoring", "prometheus-0", app: "prometheus", ip: "10.244.1.5", ports: [containerPort("web", 9090)])
        try service("monitoring", "prometheus", app: "prometheus", ports: [port("web", 9090)])
        try service("monitoring", "grafana", app: "grafana", ports: [port("http", 3000)])

        try service("restricted", "vault", app: "vault", ports: [port("http", 8200)])
    }
}
