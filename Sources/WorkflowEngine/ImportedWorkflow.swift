import Foundation

/// The text of a workflow made from another tool's recipe (`A1111Import`, `ComfyImport`): its
/// description, what could not be mapped as comments, its parameters and its nodes.
enum ImportedWorkflow {
    /// `parameters` are YAML values (quoted where needed), `nodes` the lines under `nodes:`.
    static func yaml(description: String, notes: [String], parameters: [(String, String)], nodes: [String]) -> String {
        var lines = ["version: 1", "description: \(yamlString(description))"]
        lines += notes.map { "# note: " + $0.replacingOccurrences(of: "\n", with: " ") }
        if !parameters.isEmpty {
            lines.append("parameters:")
            lines += parameters.map { "  \($0.0): \($0.1)" }
        }
        lines.append("nodes:")
        lines += nodes
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A YAML double-quoted string (JSON's escapes are valid YAML).
func yamlString(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
}

/// A number without a needless ".0".
func format(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
