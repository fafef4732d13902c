import Foundation

/// The fixed JSON documents a Kubernetes apiserver serves for discovery, and Status objects.
enum Documents {
    static let gitVersion = "v1.32.0-standin"

    static func status(code: Int, message: String, reason: String? = nil, details: JSON? = nil) -> JSON {
        var json: JSON = .obj([
            "kind": .string("Status"),
            "apiVersion": .string("v1"),
            "metadata": .obj([:]),
            "status": .string((200..<300).contains(code) ? "Success" : "Failure"),
            "message": .string(message),
        ])
        let reason = reason ?? Self.reason(for: code)
        if !reason.isEmpty { json["reason"] = .string(reason) }
        if let details { json["details"] = details }
        json["code"] = .int(code)
        return json
    }

    static func reason(for code: Int) -> String {
        switch code {
        case 400: "BadRequest"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "NotFound"
        case 405: "MethodNotAllowed"
        case 406: "NotAcceptable"
        case 409: "Conflict"
        case 410: "Expired"
        case 413: "RequestEntityTooLarge"
        case 415: "UnsupportedMediaType"
        case 422: "Invalid"
        case 429: "TooManyRequests"
        case 500: "InternalError"
        case 503: "ServiceUnavailable"
        case 504: "Timeout"
        default: ""
        }
    }

    static let unauthorized = status(code: 401, message: "Unauthorized")

    static func notFound(path: String) -> JSON {
        status(code: 404, message: "the server could not find the requested resource", details: .obj(["causes": .array([
            .obj(["reason": .string("UnexpectedServerResponse"), "message": .string("404 page not found: \(path)")])
        ])]))
    }

    static func objectNotFound(_ resource: Resource, name: String) -> JSON {
        status(
            code: 404,
            message: "\(resource.rawValue) \"\(name)\" not found",
            details: .obj(["name": .string(name), "kind": .string(resource.rawValue)])
        )
    }

    static func alreadyExists(_ resource: Resource, name: String) -> JSON {
        status(
            code: 409,
            message: "\(resource.rawValue) \"\(name)\" already exists",
            reason: "AlreadyExists",
            details: .obj(["name": .string(name), "kind": .string(resource.rawValue)])
        )
    }

    /// What RBAC answers: `services is forbidden: User "jane" cannot list resource "services" in API group "" in the
    /// namespace "restricted"` (or `at the cluster scope`).
    static func forbidden(verb: String, resource: Resource, namespace: String?, user: String) -> JSON {
        let group = resource.apiVersion.contains("/") ? String(resource.apiVersion.split(separator: "/")[0]) : ""
        let scope = namespace.map { "in the namespace \"\($0)\"" } ?? "at the cluster scope"
        return status(
            code: 403,
            message: "\(resource.rawValue) is forbidden: User \"\(user)\" cannot \(verb) resource \"\(resource.rawValue)\" in API group \"\(group)\" \(scope)",
            details: .obj(["kind": .string(resource.rawValue)])
        )
    }

    static func methodNotAllowed(_ method: String) -> JSON {
        status(code: 405, message: "the server does not allow this method on the requested resource (\(method))")
    }

    static func apiVersions(serverAddress: String) -> JSON {
        .obj([
            "kind": .string("APIVersions"),
            "versions": .array([.string("v1")]),
            "serverAddressByClientCIDRs": .array([
                .obj(["clientCIDR": .string("0.0.0.0/0"), "serverAddress": .string(serverAddress)])
            ]),
        ])
    }

    private static let appsGroup: JSON = .obj([
        "name": .string("apps"),
        "versions": .array([.obj(["groupVersion": .string("apps/v1"), "version": .string("v1")])]),
        "preferredVersion": .obj(["groupVersion": .string("apps/v1"), "version": .string("v1")]),
    ])

    static let apiGroupList: JSON = .obj([
        "kind": .string("APIGroupList"),
        "apiVersion": .string("v1"),
        "groups": .array([appsGroup]),
    ])

    static let appsAPIGroup: JSON = .obj([
        "kind": .string("APIGroup"),
        "apiVersion": .string("v1"),
        "name": .string("apps"),
        "versions": .array([.obj(["groupVersion": .string("apps/v1"), "version": .string("v1")])]),
        "preferredVersion": .obj(["groupVersion": .string("apps/v1"), "version": .string("v1")]),
    ])

    static func resourceList(groupVersion: String, resources: [Resource]) -> JSON {
        .obj([
            "kind": .string("APIResourceList"),
            "apiVersion": .string("v1"),
            "groupVersion": .string(groupVersion),
            "resources": .array(resources.map { resource in
                .obj([
                    "name": .string(resource.rawValue),
                    "singularName": .string(resource.singular),
                    "namespaced": .bool(resource.namespaced),
                    "kind": .string(resource.kind),
                    "verbs": .array(["create", "delete", "get", "list", "watch"].map(JSON.string)),
                    "shortNames": .array(resource.shortNames.map(JSON.string)),
                ])
            }),
        ])
    }

    static let coreResourceList = resourceList(groupVersion: "v1", resources: [.configmaps, .namespaces, .pods, .services])
    static let appsResourceList = resourceList(groupVersion: "apps/v1", resources: [.deployments])

    static let version: JSON = .obj([
        "major": .string("1"),
        "minor": .string("32"),
        "gitVersion": .string(gitVersion),
        "gitCommit": .string("0000000000000000000000000000000000000000"),
        "gitTreeState": .string("clean"),
        "buildDate": .string("2025-01-01T00:00:00Z"),
        "goVersion": .string("go1.23.0"),
        "compiler": .string("gc"),
        "platform": .string("linux/amd64"),
    ])

    static let rootPaths: JSON = .obj([
        "paths": .array([
            "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/healthz", "/livez", "/readyz", "/version",
            "/standin/echo", "/standin/forbid", "/standin/large", "/standin/slow", "/standin/stats",
        ].map(JSON.string))
    ])

    static func list(_ resource: Resource, items: [JSON], resourceVersion: Int) -> JSON {
        .obj([
            "kind": .string(resource.kind + "List"),
            "apiVersion": .string(resource.apiVersion),
            "metadata": .obj(["resourceVersion": .string(String(resourceVersion))]),
            "items": .array(items),
        ])
    }

    // MARK: Server-side printing (meta.k8s.io/v1 Table), as kubectl get asks for

    static func table(_ resource: Resource, objects: [JSON], resourceVersion: Int?, now: Date = Date()) -> JSON {
        var columns: [(String, String, String)] = [("Name", "string", "name")]
        switch resource {
        case .pods:
            columns += [("Ready", "string", ""), ("Status", "string", ""), ("Restarts", "string", "")]
        case .configmaps:
            columns += [("Data", "integer", "")]
        case .namespaces:
            columns += [("Status", "string", "")]
        case .services:
            columns += [("Type", "string", ""), ("Cluster-IP", "string", ""), ("External-IP", "string", ""), ("Port(s)", "string", "")]
        case .deployments:
            columns += [("Ready", "string", "")]
        }
        columns.append(("Age", "string", ""))
        let definitions: [JSON] = columns.map { name, type, format in
            .obj([
                "name": .string(name),
                "type": .string(type),
                "format": .string(format),
                "description": .string(name),
                "priority": .int(0),
            ])
        }
        let rows: [JSON] = objects.map { object in
            let metadata = object["metadata"] ?? .obj([:])
            var cells: [JSON] = [metadata["name"] ?? .string("")]
            switch resource {
            case .pods:
                let containers: Int = {
                    if case .array(let items) = object["spec"]?["containers"] ?? .null { return items.count }
                    return 0
                }()
                let phase = object["status"]?["phase"]?.stringValue ?? "Unknown"
                let ready = phase == "Running" ? containers : 0
                cells += [.string("\(ready)/\(containers)"), .string(phase), .string("0")]
            case .configmaps:
                if case .object(let members) = object["data"] ?? .null { cells.append(.int(members.count)) } else { cells.append(.int(0)) }
            case .namespaces:
                cells.append(object["status"]?["phase"] ?? .string("Active"))
            case .services:
                let spec = object["spec"] ?? .obj([:])
                var ports: [String] = []
                if case .array(let items) = spec["ports"] ?? .null {
                    for port in items {
                        guard case .int(let number) = port["port"] ?? .null else { continue }
                        ports.append("\(number)/\(port["protocol"]?.stringValue ?? "TCP")")
                    }
                }
                cells += [
                    spec["type"] ?? .string("ClusterIP"), spec["clusterIP"] ?? .string("None"), .string("<none>"),
                    .string(ports.isEmpty ? "<none>" : ports.joined(separator: ",")),
                ]
            case .deployments:
                cells.append(.string("0/0"))
            }
            cells.append(.string(age(of: metadata["creationTimestamp"]?.stringValue, now: now)))
            return .obj([
                "cells": .array(cells),
                "object": .obj([
                    "kind": .string("PartialObjectMetadata"),
                    "apiVersion": .string("meta.k8s.io/v1"),
                    "metadata": metadata,
                ]),
            ])
        }
        var metadata: JSON = .obj([:])
        if let resourceVersion { metadata["resourceVersion"] = .string(String(resourceVersion)) }
        return .obj([
            "kind": .string("Table"),
            "apiVersion": .string("meta.k8s.io/v1"),
            "metadata": metadata,
            "columnDefinitions": .array(definitions),
            "rows": .array(rows),
        ])
    }

    static func age(of timestamp: String?, now: Date) -> String {
        guard let timestamp, let date = try? Date(timestamp, strategy: .iso8601) else { return "<unknown>" }
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        switch seconds {
        case ..<120: return "\(seconds)s"
        case ..<(120 * 60): return "\(seconds / 60)m"
        case ..<(48 * 3600): return "\(seconds / 3600)h"
        default: return "\(seconds / 86400)d"
        }
    }
}
