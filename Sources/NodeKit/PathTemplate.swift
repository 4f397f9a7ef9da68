/// Placeholders in file paths: `{stem}`, `{index}`, `{seed}`, `{node}`, with an optional
/// zero-padding width (`{index:04}`). Output paths may use all of them; input paths read per
/// batch item (`latents/{stem}.safetensors`) use `{stem}` and `{index}`.
public enum PathTemplate {
    /// The placeholders an input path may use: the batch item's.
    public static let itemFields = ["stem", "index"]

    /// Whether `path` has any placeholder (any `{`).
    public static func hasPlaceholders(_ path: String) -> Bool { path.contains("{") }

    /// `template` with each placeholder replaced by its value; an unknown placeholder or an
    /// unclosed `{` is an error naming the template and the placeholders `values` has.
    public static func fill(_ template: String, _ values: [String: String]) throws -> String {
        let known = ["stem", "index", "seed", "node"].filter { values[$0] != nil }
        var result = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw NodeError.invalidInput("path template '\(template)' has an unclosed {")
            }
            let field = rest[rest.index(after: open)..<close]
            let parts = field.split(separator: ":", maxSplits: 1)
            guard let name = parts.first.map(String.init), let value = values[name] else {
                throw NodeError.invalidInput("unknown placeholder {\(field)} in '\(template)'; use "
                                             + known.map { "{\($0)}" }.joined(separator: ", "))
            }
            if parts.count == 2, let width = Int(parts[1]), value.count < width {
                result += String(repeating: "0", count: width - value.count) + value
            } else {
                result += value
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    /// The values of a batch item's placeholders (`{stem}`, `{index}`).
    public static func itemValues(_ item: BatchItem) -> [String: String] {
        ["stem": item.stem, "index": String(item.index)]
    }

    /// An output path: `{stem}` and `{index}` of the batch item (`image` and 0 outside a batch),
    /// `{seed}` of the run (`noseed` when nothing upstream is seeded) and `{node}`.
    public static func outputPath(_ template: String, context: NodeContext) throws -> String {
        try fill(template, [
            "stem": context.batchItem?.stem ?? "image",
            "index": String(context.batchItem?.index ?? 0),
            "seed": context.runInfo.generation["Seed"] ?? "noseed",
            "node": context.nodeName,
        ])
    }
}
