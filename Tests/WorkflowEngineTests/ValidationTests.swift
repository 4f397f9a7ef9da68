import DiffusionNodes
import Foundation
import ImageNodes
import NodeKit
import TestSupport
import Testing
import WorkflowEngine

/// Every kind of workflow mistake is reported before anything runs, with its line and column.
@Suite struct ValidationTests {
    let folder = TemporaryFolder()

    /// Writes `yaml` and returns the errors of checking it (empty when it is valid).
    func errors(_ yaml: String, overrides: [String: String] = [:]) throws -> [WorkflowError] {
        let path = folder.file("w-\(UUID().uuidString).yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: folder.file("in.png"), contents: Data())
        do {
            let workflow = try Workflow.load(path: path)
            _ = try Graph(workflow: workflow, registry: TestEngine.registry(), overrides: overrides, currentDirectory: folder.path)
            return []
        } catch let e as WorkflowErrors {
            return e.errors
        } catch let e as WorkflowError {
            return [e]
        }
    }

    /// The error of `kind` in `yaml`, checked to point at `token` on `line` (column 1 when token is nil).
    @discardableResult
    func expectError(_ yaml: String, _ kind: WorkflowError.Kind, at token: String? = nil, line: Int, hint: String? = nil,
                     overrides: [String: String] = [:]) throws -> WorkflowError? {
        let found = try errors(yaml, overrides: overrides)
        let error = found.first { $0.kind == kind }
        #expect(error != nil, "expected a \(kind) error, got \(found.map(\.description))")
        guard let error else { return nil }
        let lines = yaml.components(separatedBy: "\n")
        let column = token.flatMap { t in line <= lines.count ? lines[line - 1].range(of: t).map { lines[line - 1].distance(from: lines[line - 1].startIndex, to: $0.lowerBound) + 1 } : nil } ?? 1
        #expect(error.location?.line == line && error.location?.column == column, "\(error) at \(String(describing: error.location))")
        if let hint { #expect(error.hint?.contains(hint) == true, "hint of \(error): \(String(describing: error.hint))") }
        #expect(error.description.contains(":\(line):\(column): error:"))
        return error
    }

    static let valid = """
        version: 1
        parameters:
          size: 64
        nodes:
          photo: {type: load_image, path: in.png}
          small: {type: resize_image, image: !ref photo, width: !param size, height: 32}
          save: {type: save_image, image: !ref small, path: out.png}
        """

    @Test func validWorkflow() throws {
        #expect(try errors(ValidationTests.valid).isEmpty)
    }

    @Test func unknownNodeType() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: "resize_image", with: "resize_imag"),
                        .unknownNodeType, at: "resize_imag", line: 6, hint: "did you mean 'resize_image'?")
    }

    @Test func unknownParameter() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: "height: 32", with: "hieght: 32"),
                        .unknownParameter, at: "32", line: 6, hint: "did you mean 'height'?")
    }

    @Test func wrongTypes() throws {
        // A literal where an input takes a reference.
        try expectError(ValidationTests.valid.replacingOccurrences(of: "image: !ref photo", with: "image: photo"),
                        .wrongType, at: "photo,", line: 6, hint: "!ref")
        // A text where an integer is expected.
        try expectError(ValidationTests.valid.replacingOccurrences(of: "height: 32", with: "height: tall"),
                        .wrongType, at: "tall", line: 6)
        // An image where a latent is expected.
        let yaml = """
            version: 1
            nodes:
              photo: {type: load_image, path: in.png}
              model: {type: load_checkpoint, path: in.png}
              image: {type: vae_decode, vae: !ref model.vae, latent: !ref photo}
              save: {type: save_image, image: !ref image, path: out.png}
            """
        try expectError(yaml, .wrongType, at: "!ref photo", line: 5, hint: "vae_encode")
    }

    @Test func valueOutOfRange() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: "height: 32", with: "height: 0"),
                        .valueOutOfRange, at: "0}", line: 6, hint: "1...16384")
        try expectError(ValidationTests.valid.replacingOccurrences(of: "height: 32", with: "height: 32, filter: bicubik"),
                        .valueOutOfRange, at: "bicubik", line: 6, hint: "did you mean 'bicubic'?")
    }

    @Test func missingNodeAndPort() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: "image: !ref small", with: "image: !ref smal"),
                        .missingNode, at: "!ref smal", line: 7, hint: "did you mean 'small'?")
        try expectError(ValidationTests.valid.replacingOccurrences(of: "image: !ref small", with: "image: !ref small.picture"),
                        .unknownPort, at: "!ref small.picture", line: 7, hint: "image")
    }

    @Test func cycle() throws {
        let yaml = """
            version: 1
            nodes:
              a: {type: resize_image, image: !ref b, width: 8, height: 8}
              b: {type: resize_image, image: !ref a, width: 8, height: 8}
              save: {type: save_image, image: !ref b, path: out.png}
            """
        let error = try expectError(yaml, .cycle, at: "a:", line: 3)
        #expect(error?.message.contains("a -> b -> a") == true || error?.message.contains("b -> a -> b") == true)
    }

    @Test func missingInputFile() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: "path: in.png", with: "path: nowhere.png"),
                        .missingFile, at: "nowhere.png", line: 5)
    }

    @Test func missingValues() throws {
        try expectError(ValidationTests.valid.replacingOccurrences(of: ", height: 32", with: ""),
                        .missingValue, at: "small", line: 6, hint: "height")
        try expectError(ValidationTests.valid.replacingOccurrences(of: "image: !ref small, ", with: ""),
                        .missingValue, at: "save", line: 7, hint: "image")
        try expectError(ValidationTests.valid.replacingOccurrences(of: "width: !param size", with: "width: !param sise"),
                        .missingValue, at: "!param sise", line: 6, hint: "did you mean 'size'?")
    }

    @Test func syntaxErrors() throws {
        try expectError("version: 1\nnodes:\n  a: {type: load_image, path: in.png\n", .syntax, line: 4)
        try expectError(ValidationTests.valid.replacingOccurrences(of: "version: 1", with: "version: 2"), .syntax, at: "2", line: 1)
        try expectError(ValidationTests.valid.replacingOccurrences(of: "version: 1\n", with: ""), .syntax, line: 1, hint: "version")
        try expectError(ValidationTests.valid.replacingOccurrences(of: "parameters:", with: "paramaters:"), .syntax, at: "paramaters", line: 2,
                        hint: "did you mean 'parameters'?")
        try expectError(ValidationTests.valid + "\n  small: {type: load_image, path: in.png}", .syntax, at: "small", line: 6)
        try expectError(ValidationTests.valid.replacingOccurrences(of: "!ref photo", with: "!reff photo"), .syntax, at: "!reff", line: 6)
    }

    @Test func overrides() throws {
        #expect(try errors(ValidationTests.valid, overrides: ["size": "128"]).isEmpty)
        let unknown = try errors(ValidationTests.valid, overrides: ["sise": "128"])
        #expect(unknown.count == 1 && unknown[0].kind == .badOverride && unknown[0].hint?.contains("size") == true)
        let typed = try errors(ValidationTests.valid, overrides: ["size": "big"])
        #expect(typed.count == 1 && typed[0].kind == .badOverride)
        // A default written as an integer takes a fraction; a node that needs an integer says so.
        let fraction = try errors(ValidationTests.valid, overrides: ["size": "64.5"])
        #expect(fraction.count == 1 && fraction[0].kind == .wrongType && fraction[0].message.contains("'width' of 'small'"), "\(fraction)")
    }

    @Test func noOutputs() throws {
        let yaml = "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
        try expectError(yaml, .noOutputs, line: 1, hint: "save_image")
    }

    @Test func severalErrorsAtOnce() throws {
        let yaml = ValidationTests.valid
            .replacingOccurrences(of: "height: 32", with: "height: -3")
            .replacingOccurrences(of: "path: out.png", with: "path: out.png, quality: 500")
        #expect(try errors(yaml).count == 2)
    }
}
