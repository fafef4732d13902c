import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A process the tests start with `posix_spawn`, used instead of Foundation's `Process`.
///
/// On this toolchain (Swift 6.3.1), `Process.run()` looks for the highest open descriptor by copying each
/// `/proc/self/fd` entry's whole 256-byte `d_name`, while glibc's entries are only as long as the name. When an
/// entry ends near the end of glibc's directory buffer and the next page is not mapped, the test runner crashes
/// with SIGSEGV: about one full test run in five, in suites that start many processes (swift-corelibs-foundation
/// pull request 5472, merged upstream, not in this toolchain). Starting children ourselves avoids the code path.
///
/// The child gets: the given arguments and environment, stdin from /dev/null (or a pipe), stdout and stderr on
/// pipes, no other descriptor of the test runner (each one listed in `/proc/self/fd` is closed in the child, as
/// `Process` does; `FileManager` reads that directory safely), every signal at its default
/// disposition and none blocked (a test runner may block or ignore signals; proxyd's SIGTERM and SIGHUP handling
/// must see the defaults). It is only ever signalled by its PID, and reaped by `isRunning` or at `deinit`.
final class Subprocess: @unchecked Sendable {
    enum Input { case null, pipe }

    let processIdentifier: pid_t
    /// Read ends of the child's stdout and stderr.
    let standardOutput: FileHandle
    let standardError: FileHandle
    /// Write end of the child's stdin, with `Input.pipe`.
    let standardInput: FileHandle?

    private let lock = NSLock()
    private var waitStatus: Int32?

    init(executable: String, arguments: [String], environment: [String: String], input: Input = .null) throws {
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1], stdin: [Int32] = [-1, -1]
        // Held from creating the pipes until they are close-on-exec and the child started, so no other child
        // started meanwhile inherits an end of them (and holds our read end open until it exits).
        Self.spawnLock.lock()
        defer { Self.spawnLock.unlock() }
        guard Self.makePipe(&out) else { throw ChildError("pipe: \(String(cString: strerror(errno)))") }
        guard Self.makePipe(&err) else {
            close(out[0]); close(out[1])
            throw ChildError("pipe: \(String(cString: strerror(errno)))")
        }
        if input == .pipe, !Self.makePipe(&stdin) {
            for fd in out + err { close(fd) }
            throw ChildError("pipe: \(String(cString: strerror(errno)))")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input == .pipe {
            posix_spawn_file_actions_adddup2(&actions, stdin[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        // Closing a descriptor that is gone by then is not an error for glibc's posix_spawn.
        for fd in Self.openDescriptors() where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noneBlocked = sigset_t()
        sigemptyset(&noneBlocked)
        posix_spawnattr_setsigmask(&attributes, &noneBlocked)
        var allDefault = sigset_t()
        sigfillset(&allDefault)
        sigdelset(&allDefault, SIGKILL)
        sigdelset(&allDefault, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &allDefault)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(out[1])
        close(err[1])
        if input == .pipe { close(stdin[0]) }
        guard rc == 0 else {
            close(out[0])
            close(err[0])
            if input == .pipe { close(stdin[1]) }
            throw ChildError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        processIdentifier = pid
        standardOutput = FileHandle(fileDescriptor: out[0], closeOnDealloc: true)
        standardError = FileHandle(fileDescriptor: err[0], closeOnDealloc: true)
        standardInput = input == .pipe ? FileHandle(fileDescriptor: stdin[1], closeOnDealloc: true) : nil
    }

    private static let spawnLock = NSLock()

    private static func makePipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return true
    }

    /// The test runner's open descriptors.
    private static func openDescriptors() -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.compactMap { Int32($0) }
    }

    /// Whether the child still runs; reaps it (once) when it has exited.
    var isRunning: Bool {
        lock.withLock {
            if waitStatus != nil { return false }
            var status: Int32 = 0
            let r = waitpid(processIdentifier, &status, WNOHANG)
            if r == 0 { return true }
            // r == -1 only if something else reaped it; report that as an unknown status.
            waitStatus = r == processIdentifier ? status : -1
            return false
        }
    }

    /// Exit code, or the signal number if a signal ended it (Foundation's `terminationStatus` convention).
    var terminationStatus: Int32 {
        guard let status = lock.withLock({ waitStatus }) else { return -1 }
        if status == -1 { return -1 }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : signal
    }

    /// Blocks the calling thread until the child exits (for callers on a background queue).
    func waitUntilExit() {
        while isRunning { usleep(5_000) }
    }

    /// SIGTERM, by PID, if it still runs.
    func terminate() {
        if isRunning { kill(processIdentifier, SIGTERM) }
    }

    deinit {
        if waitStatus == nil {
            var status: Int32 = 0
            if waitpid(processIdentifier, &status, WNOHANG) == 0 {
                kill(processIdentifier, SIGKILL)
                waitpid(processIdentifier, &status, 0)
            }
        }
    }
}
