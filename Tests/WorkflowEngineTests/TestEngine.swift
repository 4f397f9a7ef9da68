import DiffusionNodes
import Foundation
import ImageNodes
import NodeKit
import TestSupport
import WorkflowEngine

/// What the engine's test suites share: the built-in node registry, the repository's workflows
/// and the sdflow binary built next to the tests.
enum TestEngine {
    /// A registry with the built-in packs (images, diffusion).
    static func registry() throws -> NodeRegistry {
        let registry = NodeRegistry()
        try registry.register(ImageNodes.pack)
        try registry.register(DiffusionNodes.pack)
        return registry
    }

    /// The repository's workflows folder.
    static var workflows: String { Fixtures.folder.deletingLastPathComponent().deletingLastPathComponent().path + "/workflows" }

    /// The sdflow binary built next to the test bundle.
    static var binary: String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("sdflow").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("sdflow").path
    }
}
