// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "vaultfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vaultfs", targets: ["vaultfs"]),
        .executable(name: "vaultctl", targets: ["vaultctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // The web console (vaultctl serve): an HTTP server on SwiftNIO, its TLS, and
        // server-side templates. No JavaScript build and nothing from a CDN.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "CSupport"),
        // libcurl (Debian libcurl4-openssl-dev) for the S3 backend: HTTP with keep-alive and
        // AWS Signature Version 4 done by libcurl itself, behind one C function. Built against
        // its headers and opened at run time (dlopen) by the first S3 store, so the binaries
        // do not load it and its dependencies on every start.
        .target(name: "CCurl"),
        // librbd and librados (Debian librbd-dev) for rbd: disks: snapshots, diffs between
        // them and reads, behind a few C functions. Opened at run time (dlopen) by the first
        // rbd: disk, as libcurl is, so hosts without Ceph never load them.
        .target(name: "CRbd"),
        // libnbd (Debian libnbd-dev) for nbd+unix: disks, qemu's exports with their dirty
        // bitmaps: block status and reads behind a few C functions, opened at run time too.
        .target(name: "CNbd"),
        // libext2fs (Debian libext2fs-dev) behind a small C shim: an io_manager over a Swift
        // byte source, and the inode, directory and xattr calls whose C forms are macros.
        .target(name: "CExt2fs", linkerSettings: [.linkedLibrary("ext2fs"), .linkedLibrary("com_err")]),
        .target(
            name: "VaultCore",
            dependencies: [
                "CZstd",
                "CSupport",
                "CCurl",
                "CRbd",
                "CNbd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "VaultFiles",
            dependencies: ["VaultCore", "CExt2fs"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "VaultFS",
            dependencies: ["VaultCore", "VaultFiles", "CFuse3", .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "vaultfs",
            dependencies: ["VaultFS", "VaultCore", "CSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "VaultWeb",
            dependencies: [
                "VaultCore", "VaultFiles",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "vaultctl",
            dependencies: [
                "VaultCore", "VaultFiles", "VaultWeb",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "VaultCoreTests",
            dependencies: ["VaultCore", "VaultFiles", "TestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "VaultFilesTests",
            dependencies: ["VaultCore", "VaultFiles", "TestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "VaultFSTests",
            dependencies: ["VaultFS", "VaultCore", "VaultFiles", "TestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "VaultWebTests",
            dependencies: [
                "VaultWeb", "VaultCore", .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["VaultCore", "VaultFiles", "TestSupport"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
