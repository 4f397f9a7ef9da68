import Foundation
import NodeKit
import Synchronization
import TestSupport
import Testing
import WorkflowEngine

/// What a long-running process (the server) keeps between runs: loaded models, dropped when the
/// latest runs no longer use them, and file fingerprints, taken again when a file changes.
@Suite struct ServerStateTests {
    let folder = TemporaryFolder()

    final class Model: Sendable {
        let name: String
        init(_ name: String) { self.name = name }
    }

    @Test func modelsTheLatestRunsDidNotUseAreDropped() throws {
        let models = ModelCache()
        let loads = Mutex(0)
        func use(_ name: String) throws -> Model {
            try models.model(ModelKey<Model>(name)) { loads.withLock { $0 += 1 }; return Model(name) }
        }
        _ = try use("a")
        models.endRun(keepingModelsOfLast: 2)
        _ = try use("b")
        models.endRun(keepingModelsOfLast: 2)
        #expect(models.count == 2)
        _ = try use("b")  // "a" was last used two runs ago
        models.endRun(keepingModelsOfLast: 2)
        #expect(models.count == 1)
        _ = try use("b")
        #expect(loads.withLock { $0 } == 2)
        _ = try use("a")
        #expect(loads.withLock { $0 } == 3)
    }

    @Test func aRewrittenFileGetsANewFingerprint() throws {
        let fingerprints = FileFingerprints()
        let path = folder.file("lora.safetensors")
        try Data("first version".utf8).write(to: URL(fileURLWithPath: path))
        let first = try fingerprints.fingerprint(path)
        #expect(try fingerprints.fingerprint(path) == first)
        // The same size, other content: the stamp (times) changed, so it is hashed again.
        try Data("other version".utf8).write(to: URL(fileURLWithPath: path))
        let second = try fingerprints.fingerprint(path)
        #expect(second != first)
        #expect(second == (try FileFingerprints().fingerprint(path)))
    }
}
