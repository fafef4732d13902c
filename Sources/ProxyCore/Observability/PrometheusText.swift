/// Writes the Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then one line per
/// sample (`name{label="value",...} value`). Label values and help texts are escaped as the format requires
/// (backslash, double quote and line feed in label values; backslash and line feed in help texts); floats are
/// written as Go's `strconv.ParseFloat` reads them, with `+Inf`, `-Inf` and `NaN` spelled the Prometheus way.
///
/// A plain value: build the text on any thread, then hand out `bytes`.
struct PrometheusText {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    enum MetricType: String {
        case counter, gauge, histogram
    }

    private(set) var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(8 * 1024)
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines. Every sample of the family must follow.
    mutating func family(_ name: String, _ type: MetricType, help: String) {
        append("# HELP ")
        append(name)
        bytes.append(UInt8(ascii: " "))
        for byte in help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\n"): append("\\n")
            default: bytes.append(byte)
            }
        }
        append("\n# TYPE ")
        append(name)
        bytes.append(UInt8(ascii: " "))
        append(type.rawValue)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// A family with one unlabelled sample.
    mutating func single(_ name: String, _ type: MetricType, help: String, _ value: Int) {
        family(name, type, help: help)
        sample(name, value)
    }

    mutating func single(_ name: String, _ type: MetricType, help: String, _ value: Double) {
        family(name, type, help: help)
        sample(name, value)
    }

    mutating func sample(_ name: String, _ value: Int) {
        sample(name, labels: [], value)
    }

    mutating func sample(_ name: String, _ value: Double) {
        sample(name, labels: [], value)
    }

    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Int) {
        sample(name, labels: labels.map { ($0.key, $0.value) }, value)
    }

    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Double) {
        sample(name, labels: labels.map { ($0.key, $0.value) }, value)
    }

    mutating func sample(_ name: String, labels: [(String, String)], _ value: Int) {
        sampleStart(name, labels)
        append(String(value))
        bytes.append(UInt8(ascii: "\n"))
    }

    mutating func sample(_ name: String, labels: [(String, String)], _ value: Double) {
        sampleStart(name, labels)
        append(Self.format(value))
        bytes.append(UInt8(ascii: "\n"))
    }

    /// The samples of one histogram: `_bucket` lines (cumulative, ending with `le="+Inf"`), `_sum` and `_count`.
    /// - Parameters:
    ///   - bounds: the upper bounds of the finite buckets, ascending.
    ///   - counts: observations per bucket, *not* cumulative: `bounds.count + 1` entries, the last for `+Inf`.
    mutating func histogram(
        _ name: String, labels: [(String, String)], bounds: [Double], counts: [Int], sum: Double
    ) {
        var cumulative = 0
        for (index, count) in counts.enumerated() {
            cumulative += count
            let le = index < bounds.count ? Self.format(bounds[index]) : "+Inf"
            sample(name + "_bucket", labels: labels + [("le", le)], cumulative)
        }
        sample(name + "_sum", labels: labels, sum)
        sample(name + "_count", labels: labels, cumulative)
    }

    private mutating func sampleStart(_ name: String, _ labels: [(String, String)]) {
        append(name)
        if !labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            for (index, (key, value)) in labels.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                append(key)
                append("=\"")
                for byte in value.utf8 {
                    switch byte {
                    case UInt8(ascii: "\\"): append("\\\\")
                    case UInt8(ascii: "\""): append("\\\"")
                    case UInt8(ascii: "\n"): append("\\n")
                    default: bytes.append(byte)
                    }
                }
                bytes.append(UInt8(ascii: "\""))
            }
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    /// A float as the format spells it: whole numbers without a fraction (`3`, not `3.0`), `+Inf`, `-Inf`, `NaN`,
    /// others as Swift's shortest round-tripping form (`0.005`, `1e-05`), which Go's `ParseFloat` accepts.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }
}
