@testable import ProxyCore

/// Kubeconfig loading: YAML (or JSON) bytes in, a configuration or a clear error out.
///
/// Input: the file's bytes. `Kubeconfig.parse` either returns a configuration or throws a `ConfigError` that names
/// the file; a parsed configuration is then resolved (context, cluster, user, validation) to an `UpstreamTarget` or
/// a `ConfigError`. File references in the document (CA, client certificate and key, token file) are pointed into a
/// directory that does not exist, so the target never reads the machine's files (a path such as /dev/zero would
/// make the run depend on the machine, not the parser).
enum KubeconfigFuzz {
    static let directory = "/nonexistent-proxyd-fuzz"
    static let file = directory + "/kubeconfig"

    static func run(_ data: [UInt8]) {
        var config: Kubeconfig
        do {
            config = try Kubeconfig.parse(data, file: file)
        } catch {
            require(error.file == file, "parse error without the file: \(error)")
            require(error.description.hasPrefix("kubeconfig \(file): "), "unclear parse error: \(error)")
            return
        }
        require(config.files == [file], "files \(config.files)")
        confine(&config)
        do {
            _ = try KubeconfigLoader.resolve(
                config, selection: KubeconfigSelection(), overrides: KubeconfigOverrides(), currentDirectory: directory)
        } catch {
            require(!error.description.isEmpty, "empty resolution error")
        }
    }

    /// Points every file the configuration names into `directory`, keeping the file name.
    static func confine(_ config: inout Kubeconfig) {
        func inside(_ path: String?) -> String? {
            path.map { directory + "/" + ($0.split(separator: "/").last.map(String.init) ?? "x") }
        }
        for name in config.clusters.keys {
            config.clusters[name]!.certificateAuthority = inside(config.clusters[name]!.certificateAuthority)
        }
        for name in config.users.keys {
            config.users[name]!.clientCertificate = inside(config.users[name]!.clientCertificate)
            config.users[name]!.clientKey = inside(config.users[name]!.clientKey)
            config.users[name]!.tokenFile = inside(config.users[name]!.tokenFile)
        }
    }
}
