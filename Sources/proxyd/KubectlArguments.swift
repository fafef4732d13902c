/// Accepts the argument spellings kubectl (pflag) accepts and swift-argument-parser does not:
/// `--flag=true|false` for boolean flags, `--option=` with an empty value, and `-v3`.
enum KubectlArguments {
    static let booleanFlags: Set<String> = [
        "--disable-filter", "--append-server-path", "--insecure-skip-tls-verify", "--access-log",
        "--disable-compression", "--match-server-version", "--warnings-as-errors",
        "--discover-apiservers",
    ]

    /// Boolean flags that default to true: `--flag=false` becomes `--no-flag`.
    static let invertibleFlags: Set<String> = ["--watch-kubeconfig"]

    static func normalize(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var passthrough = false
        for argument in arguments {
            if passthrough || argument == "--" {
                passthrough = true
                out.append(argument)
                continue
            }
            if let eq = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                let name = String(argument[..<eq])
                let value = String(argument[argument.index(after: eq)...])
                if invertibleFlags.contains(name) {
                    switch value.lowercased() {
                    case "true", "1", "t": out.append(name)
                    case "false", "0", "f": out.append("--no-" + name.dropFirst(2))
                    default: out.append(argument)
                    }
                    continue
                }
                if booleanFlags.contains(name) {
                    switch value.lowercased() {
                    case "true", "1", "t": out.append(name)
                    case "false", "0", "f": break
                    default: out.append(argument)  // let the parser report it
                    }
                    continue
                }
                if value.isEmpty {
                    out += [name, ""]
                    continue
                }
            }
            if argument.hasPrefix("-v"), argument.count > 2, argument.dropFirst(2).allSatisfy(\.isNumber) {
                out += ["-v", String(argument.dropFirst(2))]
                continue
            }
            out.append(argument)
        }
        return out
    }
}
