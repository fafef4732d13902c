import Dispatch
import Logging
internal import Glibc

/// Watches kubeconfig files for changes and calls `onChange` once they settle.
///
/// What is watched is the *directory* of each file (an inotify descriptor read by a Dispatch read source), not the
/// file itself: editors and `kubectl config` replace files by writing a temporary file and renaming it over the old
/// one, and Kubernetes mounts ConfigMaps and Secrets as symbolic links swapped atomically (`..data`); a watch on
/// the old inode would miss all of these. Any event in a watched directory starts (or restarts) a short quiet
/// period; when it ends, the files are read and `onChange` runs only if one of them differs from what was read
/// last time (other files in the same directories do not count).
final class ConfigurationWatcher: @unchecked Sendable {
    /// How long the directories must stay quiet before the files are compared: one save is often several events.
    static let debounce: DispatchTimeInterval = .milliseconds(200)

    private let files: [String]
    private let queue: DispatchQueue
    private let onChange: @Sendable () -> Void
    // Confined to `queue`:
    private var source: (any DispatchSourceRead)?
    private var contents: [[UInt8]?]
    private var generation = 0
    private var stopped = false

    /// Starts watching; returns nil (after logging why) when no directory can be watched.
    /// - Parameters:
    ///   - files: absolute paths (they need not exist yet; their directories should).
    ///   - queue: a serial queue for the watcher's work and `onChange`.
    init?(files: [String], queue: DispatchQueue, logger: Logger, onChange: @escaping @Sendable () -> Void) {
        guard !files.isEmpty else { return nil }
        let fd: Int32
        do {
            fd = try Posix.inotifyInit()
        } catch {
            logger.warning("cannot watch the kubeconfig files for changes (\(error)); reload with SIGHUP")
            return nil
        }
        var watched = 0
        var seen = Set<String>()
        for directory in files.map(ConfigFiles.directory(of:)) where seen.insert(directory).inserted {
            do {
                try Posix.inotifyWatchDirectory(fd: fd, path: directory)
                watched += 1
            } catch {
                logger.debug("not watching \(directory) for kubeconfig changes: \(error)")
            }
        }
        guard watched > 0 else {
            close(fd)
            return nil
        }
        self.files = files
        self.queue = queue
        self.onChange = onChange
        contents = files.map(Self.read)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setCancelHandler { close(fd) }
        self.source = source
        source.setEventHandler { [weak self] in
            _ = Posix.drain(fd: fd)
            self?.eventArrived()
        }
        source.activate()
    }

    /// Stops watching and closes the descriptor (in the source's cancel handler). Safe from any thread.
    func stop() {
        queue.async {
            self.stopped = true
            self.source?.cancel()
            self.source = nil
        }
    }

    private func eventArrived() {
        generation += 1
        let expected = generation
        queue.asyncAfter(deadline: .now() + Self.debounce) { [weak self] in
            guard let self, !self.stopped, self.generation == expected else { return }
            self.compare()
        }
    }

    private func compare() {
        let now = files.map(Self.read)
        guard now != contents else { return }
        contents = now
        onChange()
    }

    /// The file's bytes, nil when it cannot be read (missing counts as a state too: created or removed is a change).
    private static func read(_ path: String) -> [UInt8]? {
        try? Posix.readFile(atPath: path)
    }
}
