// swift-tools-version:6.0
import PackageDescription

// `PROXYD_CORE_ONLY=1 swift build` / `swift test` skips the SwiftNIO-based stand-in apiserver and the
// interop/end-to-end test targets: a fast inner loop for work on ProxyCore alone. CI never sets it.
let coreOnly = Context.environment["PROXYD_CORE_ONLY"] == "1" || Context.environment["PROXYD_FUZZ"] == "1"
// `PROXYD_FUZZ=1` (set by scripts/fuzz, which also passes `--sanitize fuzzer --sanitize address` and a scratch path
// of its own) adds the libFuzzer targets of fuzz/: never part of the normal build, never linked into proxyd.
let fuzz = Context.environment["PROXYD_FUZZ"] == "1"

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// proxyd and ProxyCore do not import the string-processing runtime (Swift `Regex` and the String algorithms
// `contains(_: String)`, `ranges(of:)`, `replacing(_:with:)`, ...): its libraries add over 1 MiB of resident memory
// to the static binary, and filter patterns use our own linear-time RE2 matcher (Sources/ProxyCore/Regexp).
// Without the implicit import, any use of those APIs is a compile error here. Tests and the stand-in may use them.
let noStringProcessing: [SwiftSetting] = [
    .unsafeFlags(["-Xfrontend", "-disable-implicit-string-processing-module-import"]),
]

var products: [Product] = [
    .executable(name: "proxyd", targets: ["proxyd"]),
    .library(name: "ProxyCore", targets: ["ProxyCore"]),
]

var dependencies: [Package.Dependency] = [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
]

var targets: [Target] = [
    .systemLibrary(
        name: "COpenSSL",
        pkgConfig: "openssl",
        providers: [.apt(["libssl-dev"])]
    ),
    .systemLibrary(
        name: "CNghttp2",
        pkgConfig: "libnghttp2",
        providers: [.apt(["libnghttp2-dev"])]
    ),
    // libyaml for kubeconfig files (see Sources/ProxyCore/Config/YAML.swift for why not a Swift YAML package).
    .systemLibrary(
        name: "CYaml",
        pkgConfig: "yaml-0.1",
        providers: [.apt(["libyaml-dev"])]
    ),
    .target(
        name: "ProxyCore",
        dependencies: [
            "COpenSSL",
            "CNghttp2",
            "CYaml",
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: strict + noStringProcessing
    ),
    .executableTarget(
        name: "proxyd",
        dependencies: [
            "ProxyCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: strict + noStringProcessing
    ),
    .testTarget(
        name: "ProxyCoreTests",
        dependencies: ["ProxyCore", "COpenSSL", "CNghttp2"],
        resources: [.copy("Fixtures")],
        swiftSettings: strict
    ),
]

if !coreOnly {
    products.append(.executable(name: "standin-apiserver", targets: ["standin-apiserver"]))
    dependencies += [
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ]
    let nio: [Target.Dependency] = [
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
    ]
    let pki: [Target.Dependency] = [
        .product(name: "X509", package: "swift-certificates"),
        .product(name: "Crypto", package: "swift-crypto"),
    ]
    targets += [
        // zlib for the stand-in's SPDY/3.1 header compression (never linked into proxyd).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Dev tool and test peer: a Kubernetes apiserver stand-in on an independent stack
        // (SwiftNIO + NIOSSL + NIOHTTP2). Never linked into proxyd.
        .target(
            name: "StandInServer",
            dependencies: nio + [
                "CZlib",
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "standin-apiserver",
            dependencies: [
                "StandInServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InteropTests",
            dependencies: ["ProxyCore", "StandInServer"] + nio + pki,
            swiftSettings: strict
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["ProxyCore", "StandInServer"] + nio + pki,
            swiftSettings: strict
        ),
    ]
}

if fuzz {
    targets.append(
        .executableTarget(
            name: "proxyd-fuzz",
            dependencies: ["ProxyCore", "CNghttp2"],
            path: "fuzz/Sources",
            // No `main`: libFuzzer's own drives LLVMFuzzerTestOneInput.
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]
        ))
}

let package = Package(
    name: "proxyd",
    platforms: [.macOS(.v14)],
    products: products,
    dependencies: dependencies,
    targets: targets,
    swiftLanguageModes: [.v6]
)
