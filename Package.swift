// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "sdflow",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sdflow", targets: ["sdflow"]),
        // The plugin SDK: what an outside node pack depends on (by URL and version, or by path):
        // the node API, the export helper and the image and tensor types. Nothing in it uses unsafeFlags.
        .library(name: "SDFlowPlugin", targets: ["SDFlowPlugin", "NodeKit", "ImageIO", "TensorCore"]),
        // An example plugin pack, loaded by sdflow at run time (docs/plugins.md).
        .library(name: "ExamplePlugin", type: .dynamic, targets: ["ExamplePlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
    ],
    targets: [
        // MARK: - C shims for system libraries
        .systemLibrary(name: "COpenBLAS", path: "Sources/CShims/COpenBLAS"),
        // zlib, for the gzipped CLIP vocabulary (named apart from ZIPFoundation's own CZlib module).
        .systemLibrary(name: "CGunzip", path: "Sources/CShims/CGunzip"),
        // libpng and libjpeg-turbo behind setjmp-safe wrappers.
        .target(name: "CImageCodecs", path: "Sources/CShims/CImageCodecs",
                linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]),

        // MARK: - Numeric core
        // Vectorised C kernels (AVX-512 / AVX2 / baseline, chosen at run time). No unsafeFlags anywhere in
        // this package (SwiftPM refuses them in dependencies, and plugin packages depend on it): the
        // kernels' register tiles are unrolled by pragmas (SDF_UNROLL), which made -O3 unnecessary.
        .target(name: "CKernels"),
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CKernels"]),
        // Weight files: safetensors, and PyTorch checkpoints through a restricted unpickler (Pickle/).
        .target(name: "SafeTensors", dependencies: ["TensorCore", "CKernels", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),

        // MARK: - Images
        .target(name: "ImageIO", dependencies: ["TensorCore", "CImageCodecs"]),

        // MARK: - Models
        // Its data files (Resources/: CLIP vocabulary, HTML entities) are found at run time by
        // SDFlowData (checkout, PREFIX/share/sdflow or SDFLOW_DATA), not as a SwiftPM bundle.
        .target(name: "DiffusionModels", dependencies: ["TensorCore", "SafeTensors", "CGunzip"],
                exclude: ["Resources"]),
        .target(name: "Sampling", dependencies: ["TensorCore"]),
        .target(name: "StableDiffusion", dependencies: ["TensorCore", "SafeTensors", "DiffusionModels", "Sampling"]),

        // MARK: - Plugin API and workflow engine
        .target(name: "NodeKit", dependencies: ["TensorCore", "ImageIO"]),
        // The C ABI of plugins loaded from shared libraries, and the Swift helper that exports a NodeKit pack through it.
        .systemLibrary(name: "SDFlowPluginABI", path: "Sources/SDFlowPluginABI"),
        .target(name: "SDFlowPlugin", dependencies: ["NodeKit", "SDFlowPluginABI", "ImageIO", "TensorCore"]),
        .target(name: "WorkflowEngine", dependencies: [
            "NodeKit", "TensorCore", "SafeTensors", "ImageIO", "SDFlowPluginABI",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // MARK: - Server
        // `sdflow serve`: ComfyUI's HTTP and WebSocket API over the workflow engine (Hummingbird 2).
        .target(name: "ComfyServer", dependencies: [
            "WorkflowEngine", "NodeKit", "TensorCore", "ImageIO",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
        ]),

        // MARK: - Built-in node packs (ordinary targets; not SwiftPM .plugin targets)
        .target(name: "ImageNodes", dependencies: ["NodeKit", "ImageIO", "TensorCore"], path: "Plugins/ImageNodes"),
        .target(name: "DiffusionNodes", dependencies: ["NodeKit", "ImageIO", "TensorCore", "SafeTensors", "DiffusionModels",
                                                       "Sampling", "StableDiffusion"], path: "Plugins/DiffusionNodes"),
        .target(name: "ExamplePlugin", dependencies: ["SDFlowPlugin", "NodeKit", "ImageIO", "TensorCore"], path: "Plugins/ExamplePlugin"),

        // MARK: - Command-line tool
        .executableTarget(name: "sdflow", dependencies: [
            "TensorCore", "SafeTensors", "ImageIO", "DiffusionModels", "Sampling", "StableDiffusion", "NodeKit", "WorkflowEngine", "ImageNodes",
            "DiffusionNodes", "ComfyServer", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // MARK: - Tests
        .target(name: "TestSupport", dependencies: ["TensorCore", "SafeTensors"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CKernels", "SafeTensors", "TestSupport"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TensorCore", "TestSupport"]),
        .testTarget(name: "DiffusionModelsTests", dependencies: ["DiffusionModels", "SafeTensors", "TensorCore", "TestSupport"]),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling", "SafeTensors", "TensorCore", "TestSupport"]),
        .testTarget(name: "StableDiffusionTests", dependencies: ["StableDiffusion", "DiffusionModels", "Sampling", "ImageIO", "SafeTensors", "TensorCore", "TestSupport"]),
        .testTarget(name: "ImageIOTests", dependencies: ["ImageIO", "SafeTensors", "TensorCore", "TestSupport"]),
        .testTarget(name: "ComfyServerTests", dependencies: [
            "ComfyServer", "WorkflowEngine", "ImageNodes", "DiffusionNodes", "ImageIO", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
        ]),
        .testTarget(name: "WorkflowEngineTests", dependencies: ["WorkflowEngine", "NodeKit", "ImageNodes", "DiffusionNodes", "DiffusionModels", "ImageIO", "SafeTensors", "TensorCore", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// MARK: - Fuzzing (scripts/fuzz.sh): libFuzzer harnesses, only in a package built with SDFLOW_FUZZ=1
// and `--sanitize fuzzer --sanitize address` (libFuzzer supplies the binary's main).
if Context.environment["SDFLOW_FUZZ"] == "1" {
    package.products.append(.executable(name: "sdflow-fuzz", targets: ["SDFlowFuzz"]))
    package.targets.append(.executableTarget(name: "SDFlowFuzz", dependencies: [
        "DiffusionModels", "DiffusionNodes", "ImageIO", "ImageNodes", "NodeKit", "SafeTensors", "SDFlowPluginABI", "TensorCore", "WorkflowEngine",
    ], path: "Fuzz/Harnesses", swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
}
