import ImageIO
import NodeKit
import Testing

/// Typed node parameters: declared once (name, kind, default, help), listed by the description,
/// read with their Swift type, and a value of the wrong type is an error naming the parameter.
struct ParamTests {
    enum Tone: String, ChoiceParameter { case warm, cool }

    static let strength = Param<Double>("strength", .number(0...1), default: 0.75, help: "how much")
    static let steps = Param<Int>("steps", .integer(1...100), help: "how many")
    static let tone = Param<Tone>("tone", default: .warm, help: "which tone")

    /// Just enough of a node's context to hold parameters.
    final class Context: NodeContext {
        let values: [String: ParameterValue]
        init(_ values: [String: ParameterValue]) { self.values = values }
        var nodeName: String { "test" }
        func input(_ name: String) -> Value? { nil }
        func parameter(_ name: String) -> ParameterValue? { values[name] }
        var batchItem: BatchItem? { nil }
        var executionKey: String { "" }
        let models = ModelCache()
        func progress(completed: Int, total: Int) {}
        var isCancelled: Bool { false }
        func warn(_ message: String) {}
        var runInfo: RunInfo { RunInfo(workflowText: "", workflowPath: "", parameters: [:], upstream: []) }
    }

    @Test func aParameterIsDeclaredOnceAndReadTyped() throws {
        let description = NodeDescription(name: "t", summary: "", parameters: [Self.strength, Self.steps, Self.tone])
        #expect(description.parameters.map(\.name) == ["strength", "steps", "tone"])
        #expect(description.parameter("strength")?.defaultValue == .number(0.75) && description.parameter("steps")?.defaultValue == nil)
        #expect(description.parameter("tone")?.kind.description == "one of warm, cool")
        #expect(description.parameter("tone")?.defaultValue == .text("warm"))

        let context = Context(["strength": .number(0.5), "steps": .integer(12), "tone": .text("cool")])
        #expect(try context[Self.strength] == 0.5 && context[Self.steps] == 12 && context[Self.tone] == .cool)
        // Integers read as numbers (YAML's 1 for a number parameter), whole numbers as integers.
        #expect(try Context(["strength": .integer(1)])[Self.strength] == 1)
        #expect(try Context(["steps": .number(3)])[Self.steps] == 3)
    }

    @Test func aValueOfAnotherTypeIsAnErrorNamingTheParameter() {
        for (context, name, expected) in [(Context(["steps": .text("many")]), "steps", "an integer"),
                                          (Context([:]), "steps", "an integer"),
                                          (Context(["tone": .text("green")]), "tone", "one of warm, cool")] {
            do {
                _ = name == "steps" ? try context[Self.steps] : try context[Self.tone].hashValue
                Issue.record("read \(name) from \(context.values)")
            } catch {
                #expect("\(error)" == "parameter '\(name)' is not \(expected)")
            }
        }
    }

    /// What saved images record reads the same declarations.
    @Test func upstreamNodesAreReadTyped() {
        let node = RunInfo.UpstreamNode(name: "d", type: "denoise", parameters: ["strength": .number(0.3), "tone": .text("cool")], inputs: [:])
        #expect(node[Self.strength] == 0.3 && node[Self.tone] == .cool && node[Self.steps] == nil)
    }
}
