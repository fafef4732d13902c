import Foundation

/// `--www` / `--www-prefix`: files from a local folder, as kubectl proxy serves them (Go's `http.FileServer` behind
/// `StripPrefix`): any method, not filtered, `index.html` for folders, a listing otherwise, `404 page not found`.
///
/// Paths reach this type decoded and already cleaned by the router (`..` and `//` were redirected), so they cannot
/// leave the folder except through symlinks placed inside it, which are followed as Go does.
/// Files are read whole (static assets are small); `Range` and conditional requests are not supported.
struct StaticFiles: Sendable {
    let directory: String
    /// With leading and trailing slash.
    let prefix: String

    init(directory: String, prefix: String) {
        self.directory = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        var p = prefix.hasPrefix("/") ? prefix : "/" + prefix
        if !p.hasSuffix("/") { p += "/" }
        self.prefix = p
    }

    /// Whether a (decoded, clean) path belongs to the static tree, ServeMux-style: the longer of the two prefixes
    /// wins, and the bare prefix without its slash is ours too (it gets redirected).
    func claims(path: String, apiPrefix: String) -> Bool {
        guard path.hasPrefix(prefix) || path + "/" == prefix else { return false }
        return prefix.count >= apiPrefix.count || !path.hasPrefix(apiPrefix)
    }

    func respond(path: String, rawQuery: String?) -> LocalResponse {
        if path + "/" == prefix {
            return .movedPermanently(to: PercentEncoding.encodePath(prefix) + (rawQuery.map { "?" + $0 } ?? ""))
        }
        let relative = String(path.dropFirst(prefix.count))
        let fullPath = directory + "/" + relative
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: fullPath, isDirectory: &isDirectory) else { return .notFound }
        if relative.hasSuffix("index.html") && (relative == "index.html" || relative.hasSuffix("/index.html")) {
            return .movedPermanently(to: "./")
        }
        if isDirectory.boolValue {
            guard relative.isEmpty || relative.hasSuffix("/") else {
                let last = relative.split(separator: "/").last.map(String.init) ?? ""
                return .movedPermanently(to: PercentEncoding.encodePath(last) + "/")
            }
            let index = fullPath + "index.html"
            if FileManager.default.fileExists(atPath: index) { return file(at: index) }
            return listing(of: fullPath)
        }
        return file(at: fullPath)
    }

    private func file(at path: String) -> LocalResponse {
        guard let data = FileManager.default.contents(atPath: path) else { return .notFound }
        let ext = (path as NSString).pathExtension.lowercased()
        return LocalResponse(
            status: 200,
            headers: HTTPHeaders([("Content-Type", Self.contentType(forExtension: ext))]),
            body: [UInt8](data))
    }

    private func listing(of path: String) -> LocalResponse {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        var html = "<pre>\n"
        for name in names {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path + name, isDirectory: &isDir)
            let shown = isDir.boolValue ? name + "/" : name
            html += "<a href=\"\(htmlEscaped(PercentEncoding.encodePath(shown)))\">\(htmlEscaped(shown))</a>\n"
        }
        html += "</pre>\n"
        return LocalResponse(
            status: 200, headers: HTTPHeaders([("Content-Type", "text/html; charset=utf-8")]), body: Array(html.utf8))
    }

    static func contentType(forExtension ext: String) -> String {
        switch ext {
        case "html", "htm": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json": return "application/json"
        case "txt": return "text/plain; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "ico": return "image/vnd.microsoft.icon"
        case "wasm": return "application/wasm"
        case "woff2": return "font/woff2"
        case "xml": return "text/xml; charset=utf-8"
        default: return "application/octet-stream"
        }
    }
}
