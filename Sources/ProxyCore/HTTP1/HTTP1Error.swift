/// A protocol error found while parsing an HTTP/1.x message.
///
/// `status` is the HTTP status proxyd should answer with before closing the connection:
/// 400, 414, 431, 501 or 505 for a client's request; 502 for anything wrong in an upstream response
/// (the client gets a Bad Gateway whatever the upstream did wrong). `reason` is a short human-readable
/// explanation for logs; it never contains message bytes beyond a few characters of context.
public struct HTTP1Error: Error, CustomStringConvertible, Sendable, Equatable {
    public var status: Int
    public var reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }

    public var description: String { "HTTP/1 error \(status): \(reason)" }

    static func badRequest(_ reason: String) -> HTTP1Error { HTTP1Error(status: 400, reason: reason) }
    static func uriTooLong(_ reason: String) -> HTTP1Error { HTTP1Error(status: 414, reason: reason) }
    static func headersTooLarge(_ reason: String) -> HTTP1Error { HTTP1Error(status: 431, reason: reason) }
    static func notImplemented(_ reason: String) -> HTTP1Error { HTTP1Error(status: 501, reason: reason) }
    static func versionNotSupported(_ reason: String) -> HTTP1Error { HTTP1Error(status: 505, reason: reason) }
}
