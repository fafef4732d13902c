/// Logger metadata keys, one place for all of them.
enum LogKeys {
    static let connectionID = "conn.id"
    static let streamID = "stream.id"
    static let upstreamAddress = "upstream.addr"
}
