/// Requests whose responses stay quiet for minutes or hours by design: watches (`?watch=…`, `/api/v1/watch/…`,
/// `/apis/<group>/<version>/watch/…`) and followed logs (`?follow=…`).
///
/// A client that half-closes its side after such a request cannot be told apart from one that went away, and the
/// second is the common case (a watcher stopped with Ctrl-C, a controller restarting), so such a request ends on the
/// client's EOF, as kubectl proxy ends every request then. Other requests keep being answered to a half-closed
/// client. (The apiserver's own long-running check also names exec, attach, port-forward and proxy: upgrades become
/// byte tunnels with half-close passed through, and a service behind the proxy answers as any server.)
enum LongRunningRequest {
    /// `target`: the upstream path and query.
    static func isQuietByDesign(target: String) -> Bool {
        let utf8 = target.utf8
        let queryStart = utf8.firstIndex(of: UInt8(ascii: "?"))
        let path = utf8[..<(queryStart ?? utf8.endIndex)]
        if hasWatchSegment(path: path) { return true }
        guard let queryStart else { return false }
        for item in utf8[utf8.index(after: queryStart)...].split(separator: UInt8(ascii: "&")) {
            let equals = item.firstIndex(of: UInt8(ascii: "="))
            let key = item[..<(equals ?? item.endIndex)]
            guard key.elementsEqual("watch".utf8) || key.elementsEqual("follow".utf8) else { continue }
            let value = equals.map { item[item.index(after: $0)...] } ?? item[item.endIndex...]
            if isTrue(value) { return true }
        }
        return false
    }

    /// The apiserver's reading of a boolean query parameter: anything but `false` and `0` (any case) is true, an
    /// empty value included.
    private static func isTrue(_ value: Substring.UTF8View) -> Bool {
        if value.elementsEqual("0".utf8) { return false }
        let lowered = value.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        return !lowered.elementsEqual("false".utf8)
    }

    /// `/api/<version>/watch/…` or `/apis/<group>/<version>/watch/…` (after any server base path).
    private static func hasWatchSegment(path: Substring.UTF8View) -> Bool {
        let segments = path.split(separator: UInt8(ascii: "/"))
        guard let root = segments.firstIndex(where: { $0.elementsEqual("api".utf8) || $0.elementsEqual("apis".utf8) })
        else { return false }
        let watchAt = root + (segments[root].count == 3 ? 2 : 3)
        return watchAt < segments.count && segments[watchAt].elementsEqual("watch".utf8)
    }
}
