internal import Glibc

/// HTTP dates (RFC 9110 §5.6.7): IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in, as Go's `http.ParseTime`.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The current time, for the `Date` header of local responses (proxied responses keep the apiserver's).
    static func now() -> String { format(time(nil)) }

    /// IMF-fixdate of `seconds` since the epoch: `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func format(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(1900 + tm.tm_year) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }

    /// Seconds since the epoch of an HTTP date in any of the three formats, or nil.
    static func parse(_ text: String) -> Int? {
        let s = text.trimmingSpaces()
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
        // asctime:     Sun Nov  6 08:49:37 1994
        let fields = s.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var day: Int?, month: Int?, year: Int?, clock: String?
        if fields.count == 6, fields[0].hasSuffix(","), fields[5] == "GMT" {
            day = Int(fields[1]); month = months.firstIndex(of: fields[2]); year = Int(fields[3]); clock = fields[4]
            guard fields[1].count == 2, fields[3].count == 4 else { return nil }
        } else if fields.count == 4, fields[0].hasSuffix(","), fields[3] == "GMT" {
            let parts = fields[1].split(separator: "-").map(String.init)
            guard parts.count == 3, parts[2].count == 2, let yy = Int(parts[2]) else { return nil }
            day = Int(parts[0]); month = months.firstIndex(of: parts[1]); year = yy < 70 ? 2000 + yy : 1900 + yy
            clock = fields[2]
        } else if fields.count == 5, days.contains(fields[0]) {
            month = months.firstIndex(of: fields[1]); day = Int(fields[2]); clock = fields[3]; year = Int(fields[4])
        } else {
            return nil
        }
        guard let day, let month, let year, let clock, (1...31).contains(day) else { return nil }
        let hms = clock.split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3, (0...23).contains(hms[0]), (0...59).contains(hms[1]), (0...60).contains(hms[2]) else {
            return nil
        }
        var tm = tm()
        tm.tm_year = Int32(year - 1900)
        tm.tm_mon = Int32(month)
        tm.tm_mday = Int32(day)
        tm.tm_hour = Int32(hms[0])
        tm.tm_min = Int32(hms[1])
        tm.tm_sec = Int32(hms[2])
        return Int(timegm(&tm))
    }
}
