import Foundation

/// AUTOMATIC1111's generation parameters, as its images record them (the PNG `parameters` text,
/// or the EXIF UserComment of JPEG and WebP):
///
///     a castle on a hill, <lora:detail:0.6>
///     Negative prompt: blurry
///     Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689, ...
///
/// Parsed as A1111's `parse_generation_parameters` does: the last line holds `key: value` pairs
/// (values may be JSON-quoted), lines before it are the prompt until `Negative prompt:`.
public struct A1111Parameters: Equatable, Sendable {
    public var prompt = ""
    public var negativePrompt = ""
    /// The `key: value` pairs of the last line, in order.
    public var settings: [(key: String, value: String)] = []

    public static func == (a: A1111Parameters, b: A1111Parameters) -> Bool {
        a.prompt == b.prompt && a.negativePrompt == b.negativePrompt && a.settings.map { [$0.key, $0.value] } == b.settings.map { [$0.key, $0.value] }
    }

    /// The value of a setting.
    public subscript(_ key: String) -> String? { settings.first { $0.key == key }?.value }

    /// `<lora:name:weight>` tags of the prompt (A1111's extra networks), weight 1 when left out.
    public var loras: [(name: String, weight: Double)] {
        let pattern = try! NSRegularExpression(pattern: "<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>")
        let ns = prompt as NSString
        return pattern.matches(in: prompt, range: NSRange(location: 0, length: ns.length)).map { m in
            let weight = m.range(at: 2).location == NSNotFound ? 1 : Double(ns.substring(with: m.range(at: 2)).trimmingCharacters(in: .whitespaces)) ?? 1
            return (ns.substring(with: m.range(at: 1)), weight)
        }
    }

    /// The prompt without its `<lora:...>`/`<hypernet:...>` tags.
    public var promptWithoutTags: String {
        prompt.replacingOccurrences(of: "<(lora|lyco|hypernet):[^>]*>", with: "", options: .regularExpression)
            .replacingOccurrences(of: "[ \\t]{2,}", with: " ", options: .regularExpression)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Parses the text; nil when it has no settings line (so it is not A1111's).
    public init?(text: String) {
        var lines = text.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n")
        guard let last = lines.last else { return nil }
        let settings = A1111Parameters.settings(last)
        guard settings.count >= 3 else { return nil }
        self.settings = settings
        lines.removeLast()
        var negative = false
        var prompt: [String] = [], negativeLines: [String] = []
        for var line in lines {
            line = line.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("Negative prompt:") {
                negative = true
                line = String(line.dropFirst("Negative prompt:".count)).trimmingCharacters(in: .whitespaces)
            }
            if negative { negativeLines.append(line) } else { prompt.append(line) }
        }
        self.prompt = prompt.joined(separator: "\n")
        negativePrompt = negativeLines.joined(separator: "\n")
    }

    /// A1111's `re_param`: `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`.
    static func settings(_ line: String) -> [(key: String, value: String)] {
        let pattern = try! NSRegularExpression(pattern: "\\s*(\\w[\\w \\-/]+):\\s*(\"(?:\\\\.|[^\\\\\"])+\"|[^,]*)(?:,|$)")
        let ns = line as NSString
        return pattern.matches(in: line, range: NSRange(location: 0, length: ns.length)).map { m in
            var value = ns.substring(with: m.range(at: 2)).trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2,
               let unquoted = try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed]) as? String {
                value = unquoted
            }
            return (ns.substring(with: m.range(at: 1)), value)
        }
    }
}
