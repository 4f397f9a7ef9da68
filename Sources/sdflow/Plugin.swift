import ArgumentParser
import DiffusionModels
import Foundation

/// `sdflow plugin`: tools for node packs written outside this repository.
struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plugin", abstract: "Create node packs (plugins).",
                                                    subcommands: [New.self])

    /// `sdflow plugin new NAME`: a Swift package that builds a loadable node pack.
    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a Swift package for a node pack: Package.swift, an example node, a test and a README.",
            discussion: """
                The package depends on sdflow's SDFlowPlugin library: by path on the checkout this sdflow \
                was built from, or by --sdflow (a git URL, with --from, or a folder). \
                `swift build -c release` in it builds lib<Name>.so; `sdflow WORKFLOW --plugins .build/release` loads it.
                """)

        @Argument(help: "The pack's name: letters, digits, '-' and '_' (e.g. my-nodes).")
        var name: String

        @Option(help: "Where to create the package folder (default: ./NAME).")
        var output: String?

        @Option(help: "The sdflow package: a git URL (used with --from) or a folder (default: the checkout sdflow was built from).")
        var sdflow: String?

        @Option(help: "The lowest sdflow version a URL dependency accepts.")
        var from: String = SDFlowVersion.number

        func run() throws {
            let template = try PluginTemplate(name: name, dependency: try dependency())
            let folder = output ?? name
            guard !FileManager.default.fileExists(atPath: folder) else {
                throw ValidationError("\(folder) already exists; choose another name or --output")
            }
            for (path, text) in template.files {
                let file = URL(fileURLWithPath: folder).appendingPathComponent(path)
                try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
                try text.write(to: file, atomically: true, encoding: .utf8)
            }
            print("""
                created \(folder)/ (pack '\(template.packName)', node '\(template.nodeName)')
                  cd \(folder) && swift build -c release && swift test
                  sdflow WORKFLOW.yaml --plugins \(folder)/.build/release
                """)
        }

        /// The package line for sdflow in the new Package.swift.
        func dependency() throws -> PluginTemplate.Dependency {
            if let sdflow {
                if sdflow.contains("://") || sdflow.hasPrefix("git@") { return .url(sdflow, from: from) }
                return .path(URL(fileURLWithPath: sdflow).standardizedFileURL.path)
            }
            guard let checkout = SDFlowData.folders.last(where: {
                FileManager.default.fileExists(atPath: $0 + "/Package.swift") && FileManager.default.fileExists(atPath: $0 + "/Sources/SDFlowPlugin")
            }) else {
                throw ValidationError("this sdflow was not built from a checkout it can find; name the sdflow package with --sdflow URL (and --from VERSION) or --sdflow FOLDER")
            }
            return .path(checkout)
        }
    }
}

/// The files of a new node-pack package.
struct PluginTemplate {
    /// How the new package depends on sdflow.
    enum Dependency {
        case url(String, from: String)
        case path(String)

        var packageLine: String {
            switch self {
            case .url(let url, let version): return ".package(url: \(quoted(url)), from: \(quoted(version)))"
            case .path(let path): return ".package(path: \(quoted(path)))"
            }
        }

        /// SwiftPM's identity of the package: the last path component, without `.git`.
        var identity: String {
            let last: String
            switch self {
            case .url(let url, _): last = url.split(separator: "/").last.map(String.init) ?? url
            case .path(let path): last = URL(fileURLWithPath: path).lastPathComponent
            }
            return (last.hasSuffix(".git") ? String(last.dropLast(4)) : last).lowercased()
        }

        private func quoted(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
    }

    /// The Swift target and library name (`MyNodes`), the pack name (`my_nodes`) and its example node.
    let target: String, packName: String, nodeName: String
    let dependency: Dependency

    init(name: String, dependency: Dependency) throws {
        let words = name.split(whereSeparator: { $0 == "-" || $0 == "_" }).map(String.init)
        guard !words.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }),
              let first = name.first, first.isLetter else {
            throw ValidationError("'\(name)' is not a pack name: use letters, digits, '-' and '_', starting with a letter")
        }
        target = words.map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        packName = words.map { $0.lowercased() }.joined(separator: "_")
        nodeName = packName + "_brighten"
        self.dependency = dependency
    }

    var files: [(String, String)] {
        [("Package.swift", packageSwift), ("Sources/\(target)/\(target).swift", source),
         ("Tests/\(target)Tests/\(target)Tests.swift", test), ("README.md", readme), (".gitignore", ".build/\nPackage.resolved\n")]
    }

    var packageSwift: String {
        """
        // swift-tools-version: 6.0
        import PackageDescription

        // An sdflow node pack: `swift build -c release` builds lib\(target).so, which sdflow loads with
        // `--plugins .build/release` (or from ~/.local/share/sdflow/plugins).
        let package = Package(
            name: "\(target)",
            products: [.library(name: "\(target)", type: .dynamic, targets: ["\(target)"])],
            dependencies: [\(dependency.packageLine)],
            targets: [
                .target(name: "\(target)", dependencies: [.product(name: "SDFlowPlugin", package: "\(dependency.identity)")]),
                .testTarget(name: "\(target)Tests", dependencies: ["\(target)", .product(name: "SDFlowPlugin", package: "\(dependency.identity)")]),
            ]
        )

        """
    }

    var source: String {
        """
        import ImageIO
        import NodeKit
        import SDFlowPlugin
        import TensorCore

        /// `\(nodeName)`: multiplies an image's colour by a factor (alpha, bit depth and metadata are kept).
        struct Brighten: Node {
            static let factor = Param<Double>("factor", .number(0...8), default: 1.2, help: "1 keeps the image; above 1 brightens")
            static let description = NodeDescription(
                name: "\(nodeName)", summary: "Brighten or darken an image by a factor.", version: 1,
                inputs: [.init("image", .image, help: "the image")],
                outputs: [.init("image", .image, help: "the image, brightened")],
                parameters: [factor])

            static func run(_ context: NodeContext) throws -> [String: Value] {
                var image = try context.image("image")
                let factor = Float(try context[Self.factor])
                let colour = image.hasAlpha ? image.channels - 1 : image.channels
                let plane = image.width * image.height
                let pixels = image.pixels.mutablePointer()
                for i in 0..<(colour * plane) { pixels[i] = min(1, max(0, pixels[i] * factor)) }
                return ["image": .image(image)]
            }
        }

        /// The entry point sdflow looks for. Add your node types to the list; bump the pack's
        /// version (or a node's) whenever results change, so that cached results are not reused.
        @_cdecl("sdflow_plugin_pack")
        public func sdflowPluginPack() -> UnsafeRawPointer {
            PluginExport.pack(NodePack(name: "\(packName)", version: "1.0", nodes: [Brighten.self]))
        }

        """
    }

    var test: String {
        """
        import ImageIO
        import NodeKit
        import SDFlowPlugin
        import Testing
        @testable import \(target)

        @Test func brightenScalesColourAndKeepsAlpha() throws {
            var photo = Image(width: 2, height: 1, channels: 4, value: 0.5)
            photo.pixels.mutablePointer()[0] = 0.9
            let outputs = try StandaloneContext.run(Brighten.self, inputs: ["image": .image(photo)], parameters: ["factor": .number(1.5)])
            let image = try #require(outputs["image"]?.imageValue)
            #expect(image.pixels[0, 0, 0] == 1)      // 0.9 x 1.5, clipped
            #expect(image.pixels[1, 0, 0] == 0.75)   // 0.5 x 1.5
            #expect(image.pixels[3, 0, 0] == 0.5)    // alpha unchanged
        }

        """
    }

    var readme: String {
        """
        # \(target)

        An sdflow node pack with one node, `\(nodeName)`.

        ```
        swift build -c release                      # builds .build/release/lib\(target).so
        swift test                                  # the node's tests
        sdflow nodes --plugins .build/release       # lists \(nodeName) under pack \(packName)
        sdflow workflow.yaml --plugins .build/release
        ```

        To load it without `--plugins`, copy `lib\(target).so` into `~/.local/share/sdflow/plugins`.

        A workflow that uses the node:

        ```yaml
        version: 1
        nodes:
          photo: {type: load_image, path: in.png}
          bright: {type: \(nodeName), image: !ref photo, factor: 1.5}
          save: {type: save_image, image: !ref bright, path: out.png}
        ```

        Nodes implement NodeKit's `Node` (a description and a `run` function) and are exported with
        `PluginExport.pack` from `Sources/\(target)/\(target).swift`. sdflow caches their results; the
        pack's and the node's version are part of the cache key, so bump one when results change.
        Parameter kinds: `.integer`, `.number`, `.text`, `.boolean`, `.choice`, `.seed` (a number
        or "random"), `.inputPath` (a file sdflow checks and fingerprints) and `.outputPath`.

        """
    }
}
