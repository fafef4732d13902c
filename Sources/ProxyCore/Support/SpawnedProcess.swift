internal import Glibc
import Synchronization

/// Runs a program to completion with `posix_spawn`: stdin is /dev/null, stderr is inherited (so a plugin's messages
/// reach proxyd's stderr, as in client-go), stdout is captured. Blocking: call it off the event loops.
///
/// (Foundation's `Process` would link CoreFoundation into proxyd; this is the thin wrapper it needs instead.)
enum SpawnedProcess {
    struct Outcome: Equatable {
        /// The exit status, or nil when a signal ended the process.
        var exitStatus: Int32?
        var stdout: [UInt8]
    }

    /// Held from creating the pipe until it is close-on-exec and the child started: another spawn from proxyd in
    /// between would otherwise inherit this pipe's write end and hold our read open until that child exits.
    private static let spawnLock = Mutex(())

    /// - Returns: the outcome, or the errno of a failed start (ENOENT, EACCES, …).
    static func run(executable: String, arguments: [String], environment: [String: String]) -> Result<Outcome, SpawnError> {
        var fds: [Int32] = [-1, -1]
        var pid: pid_t = 0
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let started: Int32 = spawnLock.withLock { _ in
            guard pipe(&fds) == 0 else { return errno }
            // Close-on-exec, so the pipe reaches the child only as its stdout.
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
            close(fds[1])
            if rc != 0 { close(fds[0]) }
            return rc
        }
        guard started == 0 else { return .failure(SpawnError(errno: started)) }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 {
                output += buffer[0..<n]
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS (function-like macros are not imported into Swift).
        let exited = status & 0x7f == 0
        return .success(Outcome(exitStatus: exited ? (status >> 8) & 0xff : nil, stdout: output))
    }

    struct SpawnError: Error, Equatable {
        let errno: Int32
    }
}
