import Foundation
import Logging
import Synchronization
import Testing

@testable import ProxyCore

/// The kubeconfig watcher against the real file system (inotify on the directory): the ways files get replaced,
/// and what must not count as a change.
@Suite(.serialized) struct ConfigurationWatcherTests {
    final class Changes: Sendable {
        let count = Mutex(0)
        func bump() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }

        /// Waits (polling, generous bound) until at least `n` changes were seen.
        func wait(for n: Int, timeout: Duration = .seconds(10)) async throws {
            let deadline = ContinuousClock.now + timeout
            while value < n && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        }
    }

    static func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("proxyd-watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func start(_ files: [String], _ changes: Changes) throws -> ConfigurationWatcher {
        try #require(ConfigurationWatcher(
            files: files, queue: DispatchQueue(label: "watch-test"), logger: Logger(label: "test")) { changes.bump() })
    }

    /// Settles after the debounce period: long enough for a change to be reported if one were coming.
    static func quiet() async throws { try await Task.sleep(for: .milliseconds(800)) }

    @Test func inPlaceWriteAtomicRenameAndCreation() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("config")
        let later = dir.appendingPathComponent("later")  // a KUBECONFIG entry that does not exist yet
        try "a: 1\n".write(to: config, atomically: false, encoding: .utf8)
        let changes = Changes()
        let watcher = try Self.start([config.path, later.path], changes)
        defer { watcher.stop() }

        // Rewritten in place, in two writes (one save): one change.
        let handle = try FileHandle(forWritingTo: config)
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data("a: ".utf8))
        try handle.write(contentsOf: Data("2\n".utf8))
        try handle.close()
        try await changes.wait(for: 1)
        try await Self.quiet()
        #expect(changes.value == 1)

        // Replaced by renaming a temporary file over it (editors, kubectl config): one change.
        try "a: 3\n".write(to: config, atomically: true, encoding: .utf8)
        try await changes.wait(for: 2)
        try await Self.quiet()
        #expect(changes.value == 2)

        // Another file in the same directory, and a rewrite with the same bytes: no change.
        try "x".write(to: dir.appendingPathComponent("unrelated"), atomically: true, encoding: .utf8)
        try "a: 3\n".write(to: config, atomically: true, encoding: .utf8)
        try await Self.quiet()
        #expect(changes.value == 2)

        // A watched file that appears: a change.
        try "b: 1\n".write(to: later, atomically: true, encoding: .utf8)
        try await changes.wait(for: 3)
        #expect(changes.value == 3)
    }

    /// Kubernetes mounts a ConfigMap as `config -> ..data/config` with `..data` a symbolic link swapped by rename.
    @Test func configMapStyleSymlinkSwap() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fm = FileManager.default
        for version in ["v1", "v2"] {
            try fm.createDirectory(at: dir.appendingPathComponent(version), withIntermediateDirectories: true)
            try "version: \(version)\n".write(
                to: dir.appendingPathComponent("\(version)/config"), atomically: false, encoding: .utf8)
        }
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("..data").path, withDestinationPath: "v1")
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("config").path, withDestinationPath: "..data/config")
        let changes = Changes()
        let watcher = try Self.start([dir.appendingPathComponent("config").path], changes)
        defer { watcher.stop() }
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("..data_tmp").path, withDestinationPath: "v2")
        #expect(rename(dir.appendingPathComponent("..data_tmp").path, dir.appendingPathComponent("..data").path) == 0)
        try await changes.wait(for: 1)
        #expect(changes.value == 1)
    }

    @Test func nothingToWatch() {
        #expect(ConfigurationWatcher(files: [], queue: .main, logger: Logger(label: "t")) {} == nil)
        #expect(ConfigurationWatcher(files: ["/nonexistent/proxyd/dir/config"], queue: .main, logger: Logger(label: "t")) {} == nil)
    }

    @Test func watchedFilesFollowKubectlsPrecedence() {
        let base = UpstreamSource(
            explicitPath: nil, environment: ["HOME": "/home/u", "KUBECONFIG": "a:/b/c:a::/d"],
            selection: KubeconfigSelection(), overrides: KubeconfigOverrides(), currentDirectory: "/work")
        #expect(base.watchedFiles == ["/work/a", "/b/c", "/d"])
        var explicit = base
        explicit.explicitPath = "conf/k"
        #expect(explicit.watchedFiles == ["/work/conf/k"])
        let home = UpstreamSource(
            explicitPath: nil, environment: ["HOME": "/home/u"], selection: KubeconfigSelection(),
            overrides: KubeconfigOverrides(), currentDirectory: "/")
        #expect(home.watchedFiles == ["/home/u/.kube/config"])
    }
}
