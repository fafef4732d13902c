import ArgumentParser
import Dispatch
import Foundation
import StandInServer

@main
struct StandInAPIServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standin-apiserver",
        abstract: "A Kubernetes apiserver stand-in (SwiftNIO, NIOSSL, NIOHTTP2) for testing proxyd and kubectl."
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port = 6443

    @Option(name: .customLong("state-dir"), help: "Write ca.crt, client.crt, client.key, kubeconfig and kubeconfig-cert here.")
    var stateDirectory: String?

    @Option(name: .customLong("token"), help: "Accepted bearer token (repeatable; default standin-token).")
    var tokens: [String] = []

    @Flag(name: .customLong("no-http2"), help: "Offer only http/1.1 in ALPN.")
    var noHTTP2 = false

    @Option(name: .customLong("large-list-bytes"), help: "Size in bytes of the large ConfigMapList.")
    var largeListBytes = 8 << 20

    @Option(name: .customLong("max-concurrent-streams"), help: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.")
    var maxConcurrentStreams = 250

    @Flag(help: "Load the demo's sample data (namespaces demo, monitoring, restricted) and serve the demo dashboard on loopback.")
    var demo = false

    func run() async throws {
        var config = StandInConfiguration()
        config.host = host
        config.port = port
        config.tokens = tokens.isEmpty ? ["standin-token"] : tokens
        config.enableHTTP2 = !noHTTP2
        config.largeListBytes = largeListBytes
        config.maxConcurrentStreams = maxConcurrentStreams
        config.stateDirectory = stateDirectory
        config.demo = demo

        // Take over SIGTERM and SIGINT before announcing, so a signal right after the line is handled cleanly.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        let sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }

        let standIn = try await StandIn.start(config)
        print("Stand-in apiserver serving on \(standIn.url)")
        if let dashboard = standIn.demoDashboard {
            print("Demo dashboard backend on 127.0.0.1:\(dashboard.httpPort) (http) and 127.0.0.1:\(dashboard.httpsPort) (https)")
        }
        fflush(nil)  // flush stdout (all stdio streams) so a parent reading the pipe sees the line now

        for await _ in signals { break }
        sources.forEach { $0.cancel() }
        try await standIn.stop()
    }
}
