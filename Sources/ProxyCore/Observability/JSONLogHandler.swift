public import Logging
import Synchronization
import FoundationEssentials

/// `--logging-format=json`: one JSON object per line on stderr, as the Kubernetes components write them:
/// `ts` (seconds since 1970, with microseconds), `level`, `msg`, then the message's metadata as fields (numbers
/// stay numbers), plus `logger` and `source`. Like the text format it only ever receives messages that proxyd
/// builds without credentials.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let output: @Sendable ([UInt8]) -> Void

    /// Lines from several threads never interleave: each is written whole under this lock.
    private static let writeLock = Mutex(())

    /// - Parameter output: where each line goes (default: stderr).
    public init(label: String, output: (@Sendable ([UInt8]) -> Void)? = nil) {
        self.label = label
        self.output = output ?? { line in
            JSONLogHandler.writeLock.withLock { _ in Console.writeStderr(String(decoding: line, as: UTF8.self)) }
        }
    }

    /// Writes one line to stderr outside any logger (for messages proxyd prints whatever the log level, such as the
    /// service index's address).
    public static func writeLine(level: Logger.Level, message: String, metadata: Logger.Metadata, label: String) {
        let line = line(date: Date(), level: level, message: message, label: label, source: "proxyd", metadata: metadata)
        writeLock.withLock { _ in Console.writeStderr(String(decoding: line, as: UTF8.self)) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        output(Self.line(
            date: Date(), level: event.level, message: event.message.description, label: label, source: event.source,
            metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }

    /// One encoded line (with its final line feed). Fields keep the order: `ts`, `level`, `msg`, then the metadata
    /// sorted by key, then `logger` and `source`; metadata cannot replace those five.
    static func line(
        date: Date, level: Logger.Level, message: String, label: String, source: String, metadata: Logger.Metadata
    ) -> [UInt8] {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let fraction = String(micros % 1_000_000)
        var text = "{\"ts\":\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
        text += ",\"level\":\"\(level.rawValue)\",\"msg\":\(jsonQuoted(message))"
        let reserved: Set<String> = ["ts", "level", "msg", "logger", "source"]
        for key in metadata.keys.sorted() where !reserved.contains(key) {
            text += ",\(jsonQuoted(key)):\(encode(metadata[key]!))"
        }
        text += ",\"logger\":\(jsonQuoted(label)),\"source\":\(jsonQuoted(source))}\n"
        return Array(text.utf8)
    }

    private static func encode(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s):
            return jsonQuoted(s)
        case .stringConvertible(let v):
            switch v {
            case let n as Int: return String(n)
            case let n as Int64: return String(n)
            case let n as UInt64: return String(n)
            case let n as UInt: return String(n)
            case let b as Bool: return b ? "true" : "false"
            case let d as Double where d.isFinite: return d.description
            default: return jsonQuoted(v.description)
            }
        case .array(let values):
            return "[" + values.map(encode).joined(separator: ",") + "]"
        case .dictionary(let dictionary):
            let fields = dictionary.keys.sorted().map { "\(jsonQuoted($0)):\(encode(dictionary[$0]!))" }
            return "{" + fields.joined(separator: ",") + "}"
        }
    }
}
