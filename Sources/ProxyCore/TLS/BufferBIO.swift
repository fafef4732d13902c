internal import COpenSSL

/// The BIO between an `SSL` and its `TLSEngine`: OpenSSL reads ciphertext straight out of the engine's `incoming`
/// buffer and appends the records it writes to the engine's `outgoing` buffer.
///
/// A memory BIO would cost two more passes over every byte received: `BIO_write` copies into a buffer that it grows
/// zero-filled (`BUF_MEM_grow_clean`), and OpenSSL copies out of it again. callgrind counted them at about a fifth
/// of the instructions per MiB of a large response.
///
/// The BIO's data pointer is the engine, unretained: the engine owns the `SSL`, which owns the BIO, and OpenSSL
/// calls the BIO only from inside the engine's own `SSL_*` calls, so the engine is alive whenever a callback runs.
enum BufferBIO {
    /// One method table for the process, created on first use and never freed (as OpenSSL's own are static).
    nonisolated(unsafe) private static let method: OpaquePointer? = {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "proxyd buffer") else { return nil }
        BIO_meth_set_write(method, bioWrite)
        BIO_meth_set_read(method, bioRead)
        BIO_meth_set_ctrl(method, bioControl)
        BIO_meth_set_create(method, bioCreate)
        return method
    }()

    /// A new BIO bound to `engine` (unretained). The caller hands it to `SSL_set_bio`.
    static func make(for engine: TLSEngine) -> OpaquePointer? {
        guard let method, let bio = BIO_new(method) else { return nil }
        BIO_set_data(bio, Unmanaged.passUnretained(engine).toOpaque())
        return bio
    }

    fileprivate static func engine(_ bio: OpaquePointer?) -> TLSEngine? {
        guard let bio, let data = BIO_get_data(bio) else { return nil }
        return Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue()
    }
}

private func bioCreate(_ bio: OpaquePointer?) -> Int32 {
    BIO_set_init(bio, 1)
    return 1
}

private func bioWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: Int32) -> Int32 {
    BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
    guard let engine = BufferBIO.engine(bio), let data, length > 0 else { return 0 }
    engine.outgoing.writeBytes(UnsafeRawBufferPointer(start: data, count: Int(length)))
    return length
}

private func bioRead(_ bio: OpaquePointer?, _ out: UnsafeMutablePointer<CChar>?, _ length: Int32) -> Int32 {
    BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
    guard let engine = BufferBIO.engine(bio), let out, length > 0 else { return 0 }
    let n = min(Int(length), engine.incoming.readableBytes)
    guard n > 0 else {
        // Nothing buffered: "retry" (WANT_READ), not EOF, as an empty memory BIO says.
        BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
        return -1
    }
    engine.incoming.withUnsafeReadableBytes { raw in
        UnsafeMutableRawPointer(out).copyMemory(from: raw.baseAddress!, byteCount: n)
    }
    engine.incoming.moveReaderIndex(forwardBy: n)
    if engine.incoming.isEmpty {
        // Let go of the socket's read buffer at once, so the loop can reuse it for the next read.
        engine.incoming = ByteBuffer()
    }
    return Int32(n)
}

private func bioControl(_ bio: OpaquePointer?, _ command: Int32, _ argument: Int, _ pointer: UnsafeMutableRawPointer?) -> Int {
    switch command {
    case BIO_CTRL_FLUSH, BIO_CTRL_DUP:
        return 1
    case BIO_CTRL_PENDING:
        return BufferBIO.engine(bio)?.incoming.readableBytes ?? 0
    case BIO_CTRL_WPENDING:
        return BufferBIO.engine(bio)?.outgoing.readableBytes ?? 0
    default:
        return 0   // EOF: never (the socket's EOF is reported by the connection); the rest: not supported
    }
}
