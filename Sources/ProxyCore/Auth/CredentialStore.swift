import Dispatch
public import Foundation
import Synchronization

/// Holds the current `CredentialSnapshot`, shared read-mostly by every event loop, and keeps it fresh:
/// a `tokenFile` (or an in-cluster service-account token) is re-read when it changes.
///
/// Readers take one uncontended lock per request (not per byte) to copy the snapshot; rotation swaps the whole
/// snapshot at once, so a request never sees half of an update.
public final class CredentialStore: Sendable {
    private let state: Mutex<CredentialSnapshot>
    private let tokenFile: String?
    private let template: CredentialSnapshot
    /// Created inactive in `init` when there is a token file; DispatchSource is thread-safe.
    nonisolated(unsafe) private let timer: (any DispatchSourceTimer)?
    private let interval: Duration

    /// How often a token file is checked for changes (client-go re-reads about every 50–60 s; checking is a
    /// cheap read, so proxyd picks rotations up sooner).
    public static let tokenFilePollInterval: Duration = .seconds(5)

    /// - Parameter sendCredentials: `false` for an `http://` server: credentials are never sent in the clear.
    /// - Throws: `CredentialError` when a token file cannot be read at start-up.
    public init(
        credentials: StaticCredentials, sendCredentials: Bool,
        pollInterval: Duration = CredentialStore.tokenFilePollInterval
    ) throws(CredentialError) {
        var impersonation = HTTPHeaders()
        if let user = credentials.impersonateUser {
            impersonation.add(name: "Impersonate-User", value: user)
            for group in credentials.impersonateGroups {
                impersonation.add(name: "Impersonate-Group", value: group)
            }
            if let uid = credentials.impersonateUID {
                impersonation.add(name: "Impersonate-Uid", value: uid)
            }
            for (key, values) in credentials.impersonateExtra.sorted(by: { $0.key < $1.key }) {
                for value in values {
                    impersonation.add(name: "Impersonate-Extra-" + Self.headerKeyEscape(key), value: value)
                }
            }
        }
        var authorization: String?
        if let token = credentials.bearerToken, !token.isEmpty {
            authorization = "Bearer " + token
        } else if let user = credentials.username {
            let raw = Array("\(user):\(credentials.password ?? "")".utf8)
            authorization = "Basic " + Data(raw).base64EncodedString()
        }
        var providerExpiry: Date?
        if authorization == nil, credentials.tokenFile == nil, sendCredentials,
            let provider = credentials.authProvider
        {
            let token = try AuthProvider.token(provider: provider, config: credentials.authProviderConfig)
            authorization = "Bearer " + token.bearer
            providerExpiry = token.expiry
        }
        authProviderTokenExpiry = providerExpiry
        var tokenFile = credentials.tokenFile
        if !sendCredentials {
            authorization = nil
            impersonation = HTTPHeaders()
            tokenFile = nil
        }
        template = CredentialSnapshot(authorization: authorization, impersonation: impersonation)
        self.tokenFile = tokenFile
        var initial = template
        if let tokenFile {
            // The file's token wins over an inline one once read (client-go).
            initial.authorization = "Bearer " + (try Self.readToken(tokenFile))
        }
        state = Mutex(initial)
        interval = pollInterval
        timer = tokenFile == nil ? nil : DispatchSource.makeTimerSource(queue: .global(qos: .utility))
    }

    /// When the `auth-provider` (oidc) token in use expires; proxyd does not refresh it (see `AuthProvider`).
    public let authProviderTokenExpiry: Date?

    /// The credentials to add to the next request.
    public var current: CredentialSnapshot { state.withLock { $0 } }

    /// Starts re-reading the token file, if there is one. A failed re-read keeps the last good token.
    public func startWatching() {
        guard let tokenFile, let timer else { return }
        let nanos = Int(interval.components.seconds * 1_000_000_000 + interval.components.attoseconds / 1_000_000_000)
        timer.schedule(deadline: .now() + .nanoseconds(nanos), repeating: .nanoseconds(nanos))
        timer.setEventHandler { [weak self] in
            self?.reloadTokenFile(tokenFile)
        }
        timer.activate()
    }

    public func stopWatching() {
        timer?.cancel()
        // libdispatch traps on releasing a source that was never activated ("Release of an inactive object");
        // activating a cancelled source runs no handler, and activating an active one does nothing.
        timer?.activate()
    }

    deinit {
        stopWatching()
    }

    /// Re-reads the token file now; returns whether the token changed.
    @discardableResult
    func reloadTokenFile(_ path: String) -> Bool {
        guard let token = try? Self.readToken(path) else { return false }
        let value = "Bearer " + token
        return state.withLock { snapshot in
            guard snapshot.authorization != value else { return false }
            snapshot.authorization = value
            return true
        }
    }

    /// client-go's escaping of an `Impersonate-Extra-` key: every byte that is not an RFC 9110 token character,
    /// and `%` itself, becomes `%XX`, so the header name stays valid (`example.com/team` → `example.com%2Fteam`).
    static func headerKeyEscape(_ key: String) -> String {
        var out = ""
        for b in key.utf8 {
            let isTokenChar: Bool
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                isTokenChar = true
            default:
                isTokenChar = "!#$&'*+-.^_`|~".utf8.contains(b)
            }
            if isTokenChar {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
            }
        }
        return out
    }

    static func readToken(_ path: String) throws(CredentialError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CredentialError("cannot read token file \(path): \(Self.reason(error))")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if token.isEmpty {
            throw CredentialError("token file \(path) is empty")
        }
        return token
    }

    private static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSCocoaErrorDomain && ns.code == NSFileReadNoSuchFileError {
            return "No such file or directory"
        }
        return ns.localizedDescription
    }
}

/// A credential could not be obtained. The message never contains the secret itself.
public struct CredentialError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
