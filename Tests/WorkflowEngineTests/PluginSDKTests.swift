import Foundation
import ImageIO
import TestSupport
import Testing

/// The plugin SDK as an outside package uses it: `sdflow plugin new` makes a package that depends
/// on this checkout by URL and version (a git repository of its sources, tagged 1.0.0, so that
/// SwiftPM applies its rules for remote dependencies: no unsafeFlags), `swift build -c release`
/// builds the pack, and sdflow loads it with `--plugins` and runs its nodes: the generated example
/// node, and Kinds.swift, which passes every kind of the plugin ABI.
@Suite(.serialized) struct PluginSDKTests {
    let folder = TemporaryFolder()

    /// The checkout's root (Tests/Fixtures/../..).
    static var checkout: URL { Fixtures.folder.deletingLastPathComponent().deletingLastPathComponent() }

    /// A git repository of this checkout's package (its manifest and sources, not the fixtures), tagged `version`.
    func repository(version: String) throws -> String {
        let repo = folder.file("sdflow")
        try FileManager.default.createDirectory(atPath: repo + "/Tests", withIntermediateDirectories: true)
        let tests = try FileManager.default.contentsOfDirectory(atPath: PluginSDKTests.checkout.path + "/Tests").filter { $0 != "Fixtures" }
        for item in ["Package.swift", "Sources", "Plugins"] + tests.map({ "Tests/" + $0 }) {
            try FileManager.default.copyItem(atPath: PluginSDKTests.checkout.path + "/" + item, toPath: repo + "/" + item)
        }
        for arguments in [["init", "-q"], ["add", "-A"], ["-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "sdflow"],
                          ["tag", version]] {
            let git = try TestEngine.runProcess("/usr/bin/env", ["git"] + arguments, in: repo)
            try #require(git.status == 0, "git \(arguments): \(git.errors)")
        }
        return repo
    }

    /// By default the package depends on the checkout sdflow was built from, by path (SwiftPM names
    /// such a package by its folder); bad names and existing folders are refused.
    @Test func theDefaultDependencyIsThisCheckoutByPath() throws {
        let created = try TestEngine.run(["plugin", "new", "my_Nodes-2"], in: folder.path)
        try #require(created.status == 0, "\(created.errors)")
        let manifest = try String(contentsOfFile: folder.file("my_Nodes-2/Package.swift"), encoding: .utf8)
        let checkout = PluginSDKTests.checkout.standardizedFileURL.path
        #expect(manifest.contains(".package(path: \"\(checkout)\")"), "\(manifest)")
        #expect(manifest.contains(".product(name: \"SDFlowPlugin\", package: \"\(URL(fileURLWithPath: checkout).lastPathComponent.lowercased())\")"))
        #expect(manifest.contains(".library(name: \"MyNodes2\", type: .dynamic"))
        let source = try String(contentsOfFile: folder.file("my_Nodes-2/Sources/MyNodes2/MyNodes2.swift"), encoding: .utf8)
        #expect(source.contains("name: \"my_nodes_2_brighten\"") && source.contains("NodePack(name: \"my_nodes_2\""))

        let again = try TestEngine.run(["plugin", "new", "my_Nodes-2"], in: folder.path)
        #expect(again.status != 0 && again.errors.contains("already exists"), "\(again.errors)")
        let bad = try TestEngine.run(["plugin", "new", "2 bad/name"], in: folder.path)
        #expect(bad.status != 0 && bad.errors.contains("is not a pack name"), "\(bad.errors)")
    }

    @Test func anOutsidePackageBuildsAPackThatSdflowRuns() throws {
        let repo = try repository(version: "1.0.0")
        let created = try TestEngine.run(["plugin", "new", "demo-nodes", "--sdflow", "file://" + repo, "--from", "1.0.0"], in: folder.path)
        try #require(created.status == 0, "\(created.errors)")
        let package = folder.file("demo-nodes")
        for file in ["Package.swift", "Sources/DemoNodes/DemoNodes.swift", "Tests/DemoNodesTests/DemoNodesTests.swift", "README.md"] {
            #expect(FileManager.default.fileExists(atPath: package + "/" + file), "\(file)")
        }
        // The every-kind nodes go into the same pack, next to the generated example.
        let entry = package + "/Sources/DemoNodes/DemoNodes.swift"
        try FileManager.default.copyItem(atPath: Fixtures.folder.appendingPathComponent("plugins/Kinds.swift").path,
                                         toPath: package + "/Sources/DemoNodes/Kinds.swift")
        let source = try String(contentsOfFile: entry, encoding: .utf8)
        try #require(source.contains("nodes: [Brighten.self]"))
        try source.replacingOccurrences(of: "nodes: [Brighten.self]", with: "nodes: [Brighten.self] + kindsNodes")
            .write(toFile: entry, atomically: true, encoding: .utf8)

        // Built as users build it; SwiftPM would refuse a remote dependency with unsafe flags.
        let build = try TestEngine.runProcess("/usr/bin/env", ["swift", "build", "-c", "release"], in: package, environment: ["SDFLOW_FUZZ": ""])
        try #require(build.status == 0, "swift build: \(build.output)\n\(build.errors)")
        let tests = try TestEngine.runProcess("/usr/bin/env", ["swift", "test", "-c", "release"], in: package, environment: ["SDFLOW_FUZZ": ""])
        #expect(tests.status == 0, "swift test: \(tests.output)\n\(tests.errors)")
        let plugins = package + "/.build/release"
        #expect(FileManager.default.fileExists(atPath: plugins + "/libDemoNodes.so"))

        // The example node through sdflow: 0.4 x 1.5 = 0.6; alpha is kept.
        try ImageFile.write(Image(pixels: .init(shape: [2, 1, 2], values: [0.4, 0.8, 1, 0.2])), to: folder.file("gray.png"))
        try """
            version: 1
            nodes:
              photo: {type: load_image, path: gray.png}
              bright: {type: demo_nodes_brighten, image: !ref photo, factor: 1.5}
              save: {type: save_image, image: !ref bright, path: bright.png}
            """.write(toFile: folder.file("bright.yaml"), atomically: true, encoding: .utf8)
        let listed = try TestEngine.run(["nodes", "--plugins", plugins], in: folder.path)
        #expect(listed.output.contains("demo_nodes_brighten") && listed.output.contains("kinds_swift"), "\(listed.output)\n\(listed.errors)")
        let ran = try TestEngine.run(["run", "bright.yaml", "--plugins", plugins, "--no-cache"], in: folder.path)
        try #require(ran.status == 0, "\(ran.errors)")
        let bright = try ImageFile.read(folder.file("bright.png"))
        #expect(bright.channels == 2 && bright.pixels.scalars.map { ($0 * 255).rounded() } == [153, 255, 255, 51], "\(bright.pixels.scalars)")

        try PluginKinds.check(suffix: "swift", plugins: plugins, in: folder)
    }
}
