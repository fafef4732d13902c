/// Size limits applied while parsing. Bodies have no limit: they are streamed, never buffered.
public struct HTTP1Limits: Sendable, Equatable {
    /// Longest request line (status line for responses), without its CRLF. Exceeded → 414 (responses: 502).
    public var requestLine: Int
    /// Largest header section: all field lines after the start line, CRLFs and the final empty line included.
    /// Also the budget for a chunked body's trailer section. Exceeded → 431 (responses: 502).
    public var headerBytes: Int
    /// Most field lines in a header (or trailer) section. Exceeded → 431 (responses: 502).
    public var headerCount: Int
    /// Most hex digits in a chunk size (leading zeros count). Exceeded → 400.
    public var chunkSizeDigits: Int
    /// Longest chunk-size line including chunk extensions, without its CRLF. Exceeded → 400.
    public var chunkLine: Int

    public init(
        requestLine: Int = 16 * 1024,
        headerBytes: Int = 64 * 1024,
        headerCount: Int = 100,
        chunkSizeDigits: Int = 16,
        chunkLine: Int = 4 * 1024
    ) {
        self.requestLine = requestLine
        self.headerBytes = headerBytes
        self.headerCount = headerCount
        self.chunkSizeDigits = chunkSizeDigits
        self.chunkLine = chunkLine
    }
}
