import Foundation
import ImageIO
import NodeKit
import SDFlowPlugin
import TensorCore

// The Swift twin of Tests/Fixtures/plugins/kinds.c: every value type and parameter kind of the
// plugin ABI, through the SDFlowPlugin library. PluginSDKTests copies this file into a package
// made by `sdflow plugin new`, builds it as an outside package and runs the same workflow as
// with the C pack (nodes kinds_swift and note_swift; see kinds.c for what they do).

/// `kinds_swift`: every value type in and out, every parameter kind.
struct KindsNode: Node {
    static let description = NodeDescription(
        name: "kinds_swift", summary: "Every value type and parameter kind (test).",
        inputs: [.init("image", .image, help: "image"), .init("mask", .mask, optional: true, help: "mask"),
                 .init("latent", .latent, optional: true, help: "latent"), .init("conditioning", .conditioning, optional: true, help: "conditioning"),
                 .init("tensor", .tensor, optional: true, help: "tensor"), .init("number", .number, optional: true, help: "number"),
                 .init("text", .text, optional: true, help: "text")],
        outputs: [.init("image", .image, help: "image"), .init("mask", .mask, help: "mask"), .init("latent", .latent, help: "latent"),
                  .init("conditioning", .conditioning, help: "conditioning"), .init("tensor", .tensor, help: "tensor"),
                  .init("number", .number, help: "number"), .init("text", .text, help: "text")],
        parameters: [
            .init("count", .integer(1...100), default: .integer(3), help: "count"),
            .init("amount", .number(0...1), default: .number(0.5), help: "amount"),
            .init("label", .text, default: .text("hi"), help: "label"),
            .init("flag", .boolean, default: .boolean(false), help: "flag"),
            .init("mode", .choice(["fast", "exact"]), default: .text("exact"), help: "mode"),
            .init("seed", .seed, default: .integer(7), help: "seed"),
            .init("source", .inputPath(.file), help: "source"),
            .init("folder", .inputPath(.folder), help: "folder"),
            .init("either", .inputPath(.fileOrFolder), help: "either"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        func text(_ name: String) -> String { context.parameter(name)?.description ?? "" }
        let source = try String(contentsOfFile: text("source"), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
        let parameters = "count=\(text("count"));amount=\(text("amount"));label=\(text("label"));flag=\(text("flag"));mode=\(text("mode"))"
            + ";seed=\(text("seed"));source=\(source);folder=\(text("folder"));either=\(text("either"))"

        var image = try context.image("image")
        let received = "{" + image.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "|") + "}@\(image.bitDepth)"
        image.metadata["kinds"] = parameters
        var mask = Tensor(zeros: [1, image.height, image.width])
        if let given = context.input("mask")?.maskValue { mask = given.pixels.map { 1 - $0 } }
        func doubled(_ name: String) -> Tensor {
            guard let t = context.input(name).flatMap({ $0.tensorValue ?? $0.latentValue ?? $0.conditioningValue }) else { return Tensor(zeros: [1]) }
            return t.map { 2 * $0 }
        }
        var number = Double(text("count")) ?? 0
        if case .number(let n)? = context.input("number") { number += n }
        var joined = "[\(parameters)]" + received
        if case .text(let t)? = context.input("text") { joined = t + joined }
        return ["image": .image(image), "mask": .mask(Image(pixels: mask)), "latent": .latent(doubled("latent")),
                "conditioning": .conditioning(doubled("conditioning")), "tensor": .tensor(doubled("tensor")),
                "number": .number(number), "text": .text(joined)]
    }
}

/// `note_swift`: writes "<text>\n<number>\n" to its output path.
struct NoteNode: Node {
    static let description = NodeDescription(
        name: "note_swift", summary: "Write a text and a number to a file (test).",
        inputs: [.init("text", .text, help: "text"), .init("number", .number, help: "number")],
        parameters: [.init("path", .outputPath, help: "path")], isOutput: true, alwaysRuns: true)

    static func run(_ context: NodeContext) throws -> [String: Value] {
        guard case .text(let text)? = context.input("text"), case .number(let number)? = context.input("number") else {
            throw NodeError.invalidInput("text and number are required")
        }
        let formatted = number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
        try "\(text)\n\(formatted)\n".write(toFile: try context.string("path"), atomically: true, encoding: .utf8)
        return [:]
    }
}

/// Registered by the test next to the package's own nodes.
let kindsNodes: [any Node.Type] = [KindsNode.self, NoteNode.self]
