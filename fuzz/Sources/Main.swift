// libFuzzer entry points for proxyd's parsers. Built only by scripts/fuzz (`PROXYD_FUZZ=1`, sanitizers fuzzer and
// address, scratch path .build-fuzz): never part of `swift build` or the shipped proxyd.
//
// One binary holds every target; `PROXYD_FUZZ_TARGET` picks one (scripts/fuzz sets it), `PROXYD_FUZZ_TARGET=list`
// prints them. Each target throws away nothing it can check: besides "no crash, no sanitizer report, no leak",
// it asserts invariants with `require`, which traps, so libFuzzer saves the input as a crash artifact.

@testable import ProxyCore

#if canImport(Glibc)
import Glibc
#endif

struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let run: @Sendable ([UInt8]) -> Void
}

let fuzzTargets: [FuzzTarget] = [
    FuzzTarget(name: "http1-request", summary: "HTTP/1 request parser: split-invariance, framing, re-serialization",
               run: HTTP1RequestFuzz.run),
    FuzzTarget(name: "http1-response", summary: "upstream HTTP/1 response parser: split-invariance, re-serialization",
               run: HTTP1ResponseFuzz.run),
    FuzzTarget(name: "chunked", summary: "chunked coding: decode arbitrary bytes, encode/decode round trip",
               run: ChunkedFuzz.run),
    FuzzTarget(name: "host", summary: "Host/authority and request-target parsing, path routing",
               run: HostFuzz.run),
    FuzzTarget(name: "kubeconfig", summary: "kubeconfig loading: YAML in, configuration or a clear error out",
               run: KubeconfigFuzz.run),
    FuzzTarget(name: "re2", summary: "RE2 pattern parser and matcher on arbitrary patterns and texts",
               run: RE2Fuzz.run),
    FuzzTarget(name: "re2-reference", summary: "RE2 matcher against a reference matcher on generated patterns",
               run: RE2ReferenceFuzz.run),
    FuzzTarget(name: "http2-session", summary: "client HTTP/2 session fed arbitrary bytes as if from the server",
               run: HTTP2SessionFuzz.run),
]

/// The target named by `PROXYD_FUZZ_TARGET`, looked up once.
let selectedTarget: FuzzTarget = {
    let name = getenv("PROXYD_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    if name == "list" {
        for target in fuzzTargets { print("\(target.name)\t\(target.summary)") }
        exit(0)
    }
    guard let target = fuzzTargets.first(where: { $0.name == name }) else {
        let known = fuzzTargets.map(\.name).joined(separator: ", ")
        printError("proxyd-fuzz: set PROXYD_FUZZ_TARGET to one of: \(known) (got \"\(name)\")")
        exit(2)
    }
    return target
}()

// The two C entry points below are the only pointers in the targets (libFuzzer's ABI); the input is copied into an
// array at once.

/// Checked before libFuzzer starts (`argc`/`argv` are not used), so a bad selector fails at once.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: OpaquePointer?, _ argv: OpaquePointer?) -> Int32 {
    _ = selectedTarget
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    selectedTarget.run(bytes)
    return 0
}

/// An invariant: on failure, prints what broke and traps (libFuzzer reports it and saves the input).
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    printError("proxyd-fuzz invariant violated: \(message())")
    fatalError("invariant violated")
}

/// Writes a line to standard error (where libFuzzer reports).
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Reads control values off the front of a fuzz input; the rest is the payload.
struct FuzzInput {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isEmpty: Bool { index >= bytes.count }

    /// The next byte, or 0 once the input ran out.
    mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }

    /// The next `n` bytes (fewer at the end).
    mutating func take(_ n: Int) -> [UInt8] {
        let end = min(bytes.count, index + n)
        defer { index = end }
        return Array(bytes[index..<end])
    }

    /// Everything not read yet.
    mutating func rest() -> [UInt8] {
        defer { index = bytes.count }
        return Array(bytes[min(index, bytes.count)...])
    }
}

/// The layout most targets read: a control byte (each target gives its bits a meaning), two bytes that choose where
/// the payload is cut into pieces, then the payload.
struct ControlledInput {
    let control: UInt8
    let payload: [UInt8]
    /// The two cut bytes, and the up to two positions in `payload` they choose.
    let cutBytes: (a: UInt8, b: UInt8)
    let cutPositions: [Int]

    init(_ data: [UInt8]) {
        var input = FuzzInput(data)
        control = input.byte()
        cutBytes = (input.byte(), input.byte())
        payload = input.rest()
        cutPositions = cuts(payload.count, cutBytes.a, cutBytes.b)
    }
}

/// Up to two cut positions in `0...count` derived from two control bytes, for feeding input in pieces.
func cuts(_ count: Int, _ a: UInt8, _ b: UInt8) -> [Int] {
    guard count > 0 else { return [] }
    let scale = { (x: UInt8) in Int(x) * count / 255 }
    return Set([scale(a), scale(b)]).sorted()
}

/// `bytes` split at `positions` (sorted, within bounds).
func pieces(_ bytes: [UInt8], at positions: [Int]) -> [ArraySlice<UInt8>] {
    var out: [ArraySlice<UInt8>] = []
    var start = 0
    for p in positions where p > start && p < bytes.count {
        out.append(bytes[start..<p])
        start = p
    }
    out.append(bytes[start...])
    return out
}

/// Small limits, so that every limit check is reachable with short inputs.
let smallLimits = HTTP1Limits(requestLine: 48, headerBytes: 96, headerCount: 4, chunkSizeDigits: 4, chunkLine: 24)
/// Limits large enough for anything a re-serialization produces.
let largeLimits = HTTP1Limits(requestLine: 1 << 20, headerBytes: 1 << 20, headerCount: 10_000)
