import Glibc

/// The result of a non-blocking system call: either it did something, or it would have blocked (`EAGAIN`).
enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

/// Thin `@inline(never)` wrappers around the socket system calls (the NIO `Posix` idea).
///
/// - `EINTR` is retried.
/// - `EAGAIN`/`EWOULDBLOCK` comes back as `IOResult.wouldBlock` where the call can block.
/// - Any other failure is thrown as `IOError(errno:function:)`.
/// - `EBADF` and `EFAULT` trap: they mean our own bookkeeping is wrong (an fd used after close, a bad pointer),
///   never something a peer can cause.
///
/// Pointers passed in must come from a `withUnsafe…` closure of the caller and are not retained.
enum Posix {
    static let socketStream = Int32(SOCK_STREAM.rawValue)
    static let nonBlockingCloexec = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    @inline(__always)
    private static func checkUnacceptable(_ err: Int32, _ function: String) {
        if err == EBADF || err == EFAULT {
            fatalError("unacceptable errno \(err) \(IOError.goStyleMessage(errno: err)) in \(function)()")
        }
    }

    /// Runs `body` until it does not fail with `EINTR`; maps -1 to `.wouldBlock` (EAGAIN) or a thrown `IOError`.
    @inline(__always)
    private static func syscall<T: FixedWidthInteger>(
        _ function: String, blocking: Bool, _ body: () -> T
    ) throws(IOError) -> IOResult<T> {
        while true {
            let result = body()
            if result == -1 {
                let err = Glibc.errno
                if err == EINTR { continue }
                if blocking && (err == EAGAIN || err == EWOULDBLOCK) { return .wouldBlock }
                checkUnacceptable(err, function)
                throw IOError(errno: err, function: function)
            }
            return .processed(result)
        }
    }

    @inline(__always)
    private static func syscallValue<T: FixedWidthInteger>(_ function: String, _ body: () -> T) throws(IOError) -> T {
        switch try syscall(function, blocking: false, body) {
        case .processed(let value): return value
        case .wouldBlock: fatalError("unreachable: \(function) would block")
        }
    }

    // MARK: data

    @inline(never)
    static func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(IOError) -> IOResult<Int> {
        try syscall("read", blocking: true) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    @inline(never)
    static func write(fd: Int32, from buffer: UnsafeRawBufferPointer) throws(IOError) -> IOResult<Int> {
        try syscall("write", blocking: true) { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// `send(2)` with `MSG_NOSIGNAL`, so a write to a reset socket yields `EPIPE` instead of `SIGPIPE`.
    @inline(never)
    static func send(fd: Int32, from buffer: UnsafeRawBufferPointer) throws(IOError) -> IOResult<Int> {
        try syscall("write", blocking: true) { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    /// `sendmsg(2)` of several buffers (gathered write) with `MSG_NOSIGNAL`.
    @inline(never)
    static func sendmsg(fd: Int32, iovecs: UnsafeBufferPointer<iovec>) throws(IOError) -> IOResult<Int> {
        var message = msghdr()
        message.msg_iov = UnsafeMutablePointer(mutating: iovecs.baseAddress)
        message.msg_iovlen = iovecs.count
        return try withUnsafePointer(to: &message) { pointer throws(IOError) in
            try syscall("write", blocking: true) { Glibc.sendmsg(fd, pointer, Int32(MSG_NOSIGNAL)) }
        }
    }

    /// Bytes the kernel still holds in `fd`'s send queue (`ioctl(TIOCOUTQ)`, which is `SIOCOUTQ` for sockets):
    /// a client whose queue stays full is slow, however readily the kernel took our writes at first.
    static func unsentBytes(fd: Int32) -> Int {
        var count: Int32 = 0
        guard Glibc.ioctl(fd, UInt(TIOCOUTQ), &count) == 0 else { return 0 }
        return Int(count)
    }

    // MARK: files and the machine

    /// Reads a whole (blocking) file: the caller's thread waits; meant for configuration, credential and certificate
    /// files. Grows its buffer until `read` returns 0, so files whose `stat` size is wrong (procfs, FIFOs) work too.
    static func readFile(atPath path: String) throws(IOError) -> [UInt8] {
        let fd = try syscallValue("open") { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        defer { Glibc.close(fd) }
        var info = stat()
        _ = try syscallValue("fstat") { Glibc.fstat(fd, &info) }
        if (info.st_mode & S_IFMT) == S_IFDIR { throw IOError(errno: EISDIR, function: "read") }
        var bytes = [UInt8](repeating: 0, count: max(Int(info.st_size), 0) + 1)
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(4096, bytes.count))) }
            let n = try syscallValue("read") {
                bytes.withUnsafeMutableBytes { raw in Glibc.read(fd, raw.baseAddress! + filled, raw.count - filled) }
            }
            if n == 0 { break }
            filled += n
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// The working directory (`getcwd`), or nil if it cannot be determined (removed, or longer than `PATH_MAX`).
    static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let ok = buffer.withUnsafeMutableBufferPointer { Glibc.getcwd($0.baseAddress, $0.count) != nil }
        guard ok else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The CPUs this process may run on (its affinity mask, so `taskset` and cpusets count, as for Go's default
    /// `GOMAXPROCS`), at least 1; the online CPU count if the mask cannot be read.
    static func availableProcessorCount() -> Int {
        if let status = try? readFile(atPath: "/proc/self/status"), let n = allowedCPUCount(procStatus: status), n > 0 {
            return n
        }
        return max(1, Int(Glibc.sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Counts the bits of the `Cpus_allowed:` mask (hex words separated by commas) in `/proc/PID/status` text.
    /// (`sched_getaffinity` needs `_GNU_SOURCE`, which the Glibc module does not define.)
    static func allowedCPUCount(procStatus: [UInt8]) -> Int? {
        let key = Array("Cpus_allowed:".utf8)
        for line in procStatus.split(separator: UInt8(ascii: "\n")) where line.starts(with: key) {
            var bits = 0
            for byte in line.dropFirst(key.count) {
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): bits += (byte - UInt8(ascii: "0")).nonzeroBitCount
                case UInt8(ascii: "a")...UInt8(ascii: "f"): bits += (byte - UInt8(ascii: "a") + 10).nonzeroBitCount
                case UInt8(ascii: ","), UInt8(ascii: " "), UInt8(ascii: "\t"): continue
                default: return nil
                }
            }
            return bits
        }
        return nil
    }

    /// The number of entries in a directory, `.` and `..` excluded (`/proc/self/fd` for the open descriptors).
    static func directoryEntryCount(atPath path: String) -> Int? {
        guard let dir = Glibc.opendir(path) else { return nil }
        defer { Glibc.closedir(dir) }
        var count = 0
        while let entry = Glibc.readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { count += 1 }
        }
        return count
    }

    /// The soft and hard `RLIMIT_NOFILE`.
    static func openFileLimit() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard Glibc.getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    // MARK: inotify

    /// A non-blocking, close-on-exec inotify descriptor (the caller owns it).
    static func inotifyInit() throws(IOError) -> Int32 {
        try syscallValue("inotify_init1") { Glibc.inotify_init1(O_NONBLOCK | O_CLOEXEC) }
    }

    /// Watches `path` (a directory) for entries created, written, moved, renamed or deleted.
    static func inotifyWatchDirectory(fd: Int32, path: String) throws(IOError) {
        let mask = UInt32(IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB)
            | UInt32(IN_ONLYDIR)
        _ = try syscallValue("inotify_add_watch") { Glibc.inotify_add_watch(fd, path, mask) }
    }

    /// Reads and discards everything readable on a non-blocking descriptor; returns how many bytes it was.
    static func drain(fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                total += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            return total
        }
    }

    // MARK: lifecycle

    @inline(never)
    static func socket(domain: Int32, type: Int32, protocol: Int32 = 0) throws(IOError) -> Int32 {
        try syscallValue("socket") { Glibc.socket(domain, type, `protocol`) }
    }

    /// `close(2)`. `EINTR` is not retried: on Linux the fd is released even then.
    @inline(never)
    static func close(fd: Int32) throws(IOError) {
        if Glibc.close(fd) == -1 {
            let err = Glibc.errno
            if err == EINTR { return }
            checkUnacceptable(err, "close")
            throw IOError(errno: err, function: "close")
        }
    }

    @inline(never)
    static func shutdown(fd: Int32, how: Int32) throws(IOError) {
        _ = try syscallValue("shutdown") { Glibc.shutdown(fd, how) }
    }

    // MARK: addresses

    @inline(never)
    static func bind(fd: Int32, address: UnsafePointer<sockaddr>, length: socklen_t) throws(IOError) {
        _ = try syscallValue("bind") { Glibc.bind(fd, address, length) }
    }

    @inline(never)
    static func listen(fd: Int32, backlog: Int32) throws(IOError) {
        _ = try syscallValue("listen") { Glibc.listen(fd, backlog) }
    }

    /// Non-blocking connect. - Returns: `true` when connected at once, `false` when in progress
    /// (`EINPROGRESS`, or `EINTR`, after which the connection also completes asynchronously).
    @inline(never)
    static func connect(fd: Int32, address: UnsafePointer<sockaddr>, length: socklen_t) throws(IOError) -> Bool {
        if Glibc.connect(fd, address, length) == 0 { return true }
        let err = Glibc.errno
        if err == EINPROGRESS || err == EINTR { return false }
        checkUnacceptable(err, "connect")
        throw IOError(errno: err, function: "connect")
    }

    private typealias Accept4 = @convention(c) (
        Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32
    ) -> Int32

    /// glibc's `accept4`, which the Glibc module does not import (it is a `_GNU_SOURCE` declaration).
    /// Looked up once with `dlsym`; Package.swift has no C shim target for EventLoop/.
    private static let accept4Function: Accept4? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "accept4") else { return nil }
        return unsafeBitCast(symbol, to: Accept4.self)
    }()

    /// `accept4(2)`; `EAGAIN` → `.wouldBlock`. Falls back to `accept` + `fcntl` if `accept4` is unavailable.
    @inline(never)
    static func accept4(
        fd: Int32, address: UnsafeMutablePointer<sockaddr>?, length: UnsafeMutablePointer<socklen_t>?, flags: Int32
    ) throws(IOError) -> IOResult<Int32> {
        if let accept4Function {
            return try syscall("accept", blocking: true) { accept4Function(fd, address, length, flags) }
        }
        let result = try syscall("accept", blocking: true) { Glibc.accept(fd, address, length) }
        if case .processed(let newFD) = result {
            do { try setNonBlockingAndCloexec(fd: newFD) } catch { try? close(fd: newFD); throw error }
        }
        return result
    }

    @inline(never)
    static func getsockname(fd: Int32, address: UnsafeMutablePointer<sockaddr>, length: UnsafeMutablePointer<socklen_t>) throws(IOError) {
        _ = try syscallValue("getsockname") { Glibc.getsockname(fd, address, length) }
    }

    @inline(never)
    static func getpeername(fd: Int32, address: UnsafeMutablePointer<sockaddr>, length: UnsafeMutablePointer<socklen_t>) throws(IOError) {
        _ = try syscallValue("getpeername") { Glibc.getpeername(fd, address, length) }
    }

    // MARK: options

    @inline(never)
    static func setsockopt(fd: Int32, level: Int32, name: Int32, value: Int32) throws(IOError) {
        var value = value
        _ = try syscallValue("setsockopt") {
            Glibc.setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    @inline(never)
    static func getsockopt(fd: Int32, level: Int32, name: Int32) throws(IOError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try syscallValue("getsockopt") { Glibc.getsockopt(fd, level, name, &value, &length) }
        return value
    }

    @inline(never)
    static func fcntl(fd: Int32, command: Int32, value: Int32) throws(IOError) -> Int32 {
        try syscallValue("fcntl") { Glibc.fcntl(fd, command, value) }
    }

    @inline(never)
    static func fcntl(fd: Int32, command: Int32) throws(IOError) -> Int32 {
        try syscallValue("fcntl") { Glibc.fcntl(fd, command) }
    }

    /// Sets `O_NONBLOCK` and `FD_CLOEXEC` (for fds we did not create ourselves, e.g. inherited from systemd).
    static func setNonBlockingAndCloexec(fd: Int32) throws(IOError) {
        let flags = try fcntl(fd: fd, command: F_GETFL)
        if flags & O_NONBLOCK == 0 { _ = try fcntl(fd: fd, command: F_SETFL, value: flags | O_NONBLOCK) }
        let fdFlags = try fcntl(fd: fd, command: F_GETFD)
        if fdFlags & FD_CLOEXEC == 0 { _ = try fcntl(fd: fd, command: F_SETFD, value: fdFlags | FD_CLOEXEC) }
    }
}

/// Enables TCP keep-alive probes on `fd`.
/// - Parameters:
///   - fd: a TCP socket (not owned; only configured).
///   - idle: seconds of idleness before the first probe (also used as the probe interval), rounded down, min 1.
/// - Throws: `IOError` from `setsockopt`.
public func setTCPKeepAlive(fd: Int32, idle: Duration) throws(IOError) {
    let seconds = Int32(clamping: max(1, idle.components.seconds))
    try Posix.setsockopt(fd: fd, level: SOL_SOCKET, name: SO_KEEPALIVE, value: 1)
    try Posix.setsockopt(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_KEEPIDLE, value: seconds)
    try Posix.setsockopt(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_KEEPINTVL, value: seconds)
    try Posix.setsockopt(fd: fd, level: Int32(IPPROTO_TCP), name: TCP_KEEPCNT, value: 3)
}
