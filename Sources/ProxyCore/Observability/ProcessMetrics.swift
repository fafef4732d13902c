internal import Glibc

/// The standard `process_*` metrics every Prometheus client library exports (CPU time, memory, descriptors, start
/// time), read from `/proc` when scraped.
struct ProcessMetrics: Sendable, Equatable {
    var cpuSeconds: Double = 0
    var residentBytes = 0
    var virtualBytes = 0
    var openFDs = 0
    var maxFDs = 0
    var startTimeSeconds: Double = 0

    /// The current values, or nil where `/proc` cannot be read (then no `process_*` metric is written).
    static func read() -> ProcessMetrics? {
        guard let stat = try? Posix.readFile(atPath: "/proc/self/stat"),
            let bootStat = try? Posix.readFile(atPath: "/proc/stat")
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard var metrics = parse(stat: stat, bootStat: bootStat, ticksPerSecond: ticks, pageSize: pageSize) else {
            return nil
        }
        metrics.openFDs = Posix.directoryEntryCount(atPath: "/proc/self/fd").map { $0 - 1 } ?? 0  // minus opendir's own
        if let limit = Posix.openFileLimit() { metrics.maxFDs = Int(clamping: limit.soft) }
        return metrics
    }

    /// Parses `/proc/self/stat` (fields after the parenthesised command name, which may contain spaces) and the
    /// `btime` line of `/proc/stat`.
    static func parse(stat: [UInt8], bootStat: [UInt8], ticksPerSecond: Double, pageSize: Int) -> ProcessMetrics? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")), ticksPerSecond > 0 else { return nil }
        // Field 3 (state) is the first after ")"; utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
            .map { String(decoding: $0, as: UTF8.self) }
        func field(_ number: Int) -> Double? {
            let index = number - 3
            guard index < fields.count else { return nil }
            return Double(fields[index].trimmingWhitespace())
        }
        guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23),
            let rss = field(24)
        else { return nil }
        var bootTime: Double?
        for line in bootStat.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("btime ".utf8)) {
            bootTime = Double(String(decoding: line.dropFirst(6), as: UTF8.self).trimmingWhitespace())
        }
        guard let bootTime else { return nil }
        var metrics = ProcessMetrics()
        metrics.cpuSeconds = (utime + stime) / ticksPerSecond
        metrics.startTimeSeconds = bootTime + start / ticksPerSecond
        metrics.virtualBytes = Int(vsize)
        metrics.residentBytes = Int(rss) * pageSize
        return metrics
    }
}
