// swift-tools-version:5.10
import PackageDescription

let package = Package(
    name: "kv",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kv-master", targets: ["MasterFCGI"]),
        .executable(name: "kv-replicad", targets: ["ReplicaD"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CFCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // CRC-32C with the CPU's instruction where there is one (C: Swift cannot enable SSE4.2 per function).
        .target(name: "CKVChecksum"),
        .target(name: "KVCommon", dependencies: [
            "CYAML", "CKVChecksum", .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "HeapModule", package: "swift-collections"),
        ]),
        .target(name: "KVRuntime", dependencies: [
            "KVCommon",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The master's and the replica's code as libraries, so that unit tests reach every part of them; the
        // executables are their command lines.
        .target(name: "KVMaster", dependencies: [
            "CFCGI", "KVCommon", "KVRuntime",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "KVReplica", dependencies: [
            "KVCommon", "KVRuntime",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "MasterFCGI", dependencies: [
            "KVMaster", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ReplicaD", dependencies: [
            "KVReplica", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Helpers shared by the test targets (seeded randomness); not part of any product.
        .target(name: "KVTestSupport", path: "Tests/KVTestSupport"),
        .testTarget(name: "KVCommonTests", dependencies: ["KVCommon", "KVTestSupport"]),
        .testTarget(name: "KVRuntimeTests", dependencies: [
            "KVRuntime", "KVCommon", .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "SimulationTests", dependencies: ["KVCommon", "KVTestSupport"]),
        .testTarget(name: "KVMasterTests", dependencies: ["KVMaster", "KVCommon", "KVRuntime", "KVTestSupport"]),
        .testTarget(name: "KVReplicaTests", dependencies: ["KVReplica", "KVCommon", "KVRuntime", "KVTestSupport"]),
    ]
)
