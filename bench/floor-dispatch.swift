// The least an HTTP/1.1 server built on Dispatch sources costs per request, for bench/run's floor rows.
//
// It does what proxyd's client side does and nothing else: one serial queue (proxyd pinned to one CPU runs one
// event loop), a DispatchSourceRead per non-blocking client socket, reads until a short read, one write per
// read event with the answers to every complete request head read. No TLS, no upstream, no parsing beyond finding
// the end of each head: proxyd does all of this plus its own work, so its system calls, context switches and CPU
// per request cannot be below this program's in the same rig.
//
// With a CA file it is also the idle floor: before serving it initialises the system OpenSSL as proxyd does (the
// system configuration, a client SSL_CTX, the CA file loaded), so its resident memory right after start is what
// the static Swift runtime, Dispatch and OpenSSL cost before any proxy code.
//
// Build: swiftc -O -static-stdlib bench/floor-dispatch.swift -o floor-dispatch (static runtime, as proxyd ships)
// Usage: floor-dispatch PORT BODY_BYTES [CA_FILE]   (listens on 127.0.0.1:PORT, answers every request with BODY_BYTES)
import Dispatch
import Glibc

let args = CommandLine.arguments
guard args.count == 3 || args.count == 4, let port = UInt16(args[1]), let bodyBytes = Int(args[2]) else {
    fputs("usage: floor-dispatch PORT BODY_BYTES [CA_FILE]\n", stderr)
    exit(2)
}
if args.count == 4 { initialiseOpenSSL(caFile: args[3]) }

/// OPENSSL_init_ssl with the configuration loaded, SSL_CTX_new(TLS_client_method()), the CA file: found with
/// dlopen, so this one-file tool needs no module map.
func initialiseOpenSSL(caFile: String) {
    guard let library = dlopen("libssl.so.3", RTLD_NOW | RTLD_GLOBAL) else {
        fputs("floor-dispatch: cannot load libssl.so.3\n", stderr)
        exit(1)
    }
    func function<T>(_ name: String, _: T.Type) -> T {
        guard let address = dlsym(library, name) else {
            fputs("floor-dispatch: libssl has no \(name)\n", stderr)
            exit(1)
        }
        return unsafeBitCast(address, to: T.self)
    }
    typealias InitSSL = @convention(c) (UInt64, OpaquePointer?) -> Int32
    typealias ClientMethod = @convention(c) () -> OpaquePointer?
    typealias NewContext = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias LoadVerify = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32
    let loadConfig: UInt64 = 0x40  // OPENSSL_INIT_LOAD_CONFIG
    guard function("OPENSSL_init_ssl", InitSSL.self)(loadConfig, nil) == 1,
          let context = function("SSL_CTX_new", NewContext.self)(function("TLS_client_method", ClientMethod.self)()),
          function("SSL_CTX_load_verify_locations", LoadVerify.self)(context, caFile, nil) == 1 else {
        fputs("floor-dispatch: OpenSSL initialisation failed\n", stderr)
        exit(1)
    }
}
let body = String(repeating: "x", count: bodyBytes)
let response = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(bodyBytes)\r\n\r\n\(body)".utf8)

func check(_ result: Int32, _ what: String) -> Int32 {
    if result < 0 { perror(what); exit(1) }
    return result
}

let listenFD = check(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0), "socket")
var one: Int32 = 1
_ = setsockopt(listenFD, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = port.bigEndian
address.sin_addr.s_addr = inet_addr("127.0.0.1")
_ = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        check(bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)), "bind")
    }
}
_ = check(listen(listenFD, 1024), "listen")

/// One client: its socket, its read source, and how far into a request head it is ("\r\n\r\n" matched so far).
final class Client: @unchecked Sendable {
    let fd: Int32
    var source: DispatchSourceRead?
    var matched = 0
    init(fd: Int32) { self.fd = fd }

    /// Reads until a short read, then answers every complete head with one write.
    func readable(_ buffer: UnsafeMutableRawBufferPointer, _ out: inout [UInt8]) {
        var heads = 0
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { close(); return }
            if n < 0 { break }
            for byte in buffer[..<n] {
                switch (matched, byte) {
                case (0, 13), (2, 13): matched += 1
                case (1, 10): matched = 2
                case (3, 10): matched = 0; heads += 1
                case (_, 13): matched = 1
                default: matched = 0
                }
            }
            if n < buffer.count { break }
        }
        guard heads > 0 else { return }
        out.removeAll(keepingCapacity: true)
        for _ in 0..<heads { out.append(contentsOf: response) }
        let written = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written != out.count { close() }      // a benchmark client reads everything: a short write is an error
    }

    func close() {
        source?.cancel()
        source = nil
    }
}

let queue = DispatchQueue(label: "floor.loop")
/// Scratch space, only touched on `queue`.
final class Scratch: @unchecked Sendable {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    var out: [UInt8] = []
}
let scratch = Scratch()

let acceptSource = DispatchSource.makeReadSource(fileDescriptor: listenFD, queue: queue)
acceptSource.setEventHandler { @Sendable in
    while true {
        let fd = accept(listenFD, nil, nil)
        if fd < 0 { return }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var noDelay: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        let client = Client(fd: fd)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { @Sendable in client.readable(scratch.buffer, &scratch.out) }
        source.setCancelHandler { @Sendable in _ = Glibc.close(fd) }
        client.source = source
        source.resume()
    }
}
acceptSource.resume()
print("listening on 127.0.0.1:\(port)")
fflush(stdout)
dispatchMain()
