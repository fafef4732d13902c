import Glibc

/// An error from a system call (or from name resolution) on the event-loop layer.
///
/// `description` reads like Go's `net` errors: `"bind: address already in use"`,
/// `"connect: connection refused"`, `"lookup nosuch.example: no such host"`.
public struct IOError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The `errno` value (0 when the failure did not come with one, e.g. a failed name lookup).
    public let errno: Int32
    /// The failing operation, e.g. `"bind"`, `"connect"`, `"read"`, `"lookup example.com"`.
    public let function: String
    /// Replaces the `strerror` text when set (used for `getaddrinfo` failures and timeouts).
    public let detail: String?

    /// - Parameters:
    ///   - errno: the `errno` value reported by the call.
    ///   - function: the name of the failing call.
    ///   - detail: optional text that replaces the `strerror` message.
    public init(errno: Int32, function: String, detail: String? = nil) {
        self.errno = errno
        self.function = function
        self.detail = detail
    }

    /// The error text without the function: Go-style, lower-case `strerror` (`"address already in use"`).
    public var message: String {
        if let detail { return detail }
        return IOError.goStyleMessage(errno: errno)
    }

    public var description: String { "\(function): \(message)" }

    /// `strerror(errno)` with its first letter lower-cased, which matches Go's table for the common cases.
    static func goStyleMessage(errno: Int32) -> String {
        guard let cString = strerror(errno) else { return "errno \(errno)" }
        let text = String(cString: cString)
        guard let first = text.first else { return "errno \(errno)" }
        return first.lowercased() + text.dropFirst()
    }
}
