import Foundation

/// How a prompt's emphasis syntax is read (the `weighting` parameter of `clip_encode`).
public enum PromptWeighting: String, CaseIterable, Sendable {
    /// AUTOMATIC1111's: `(x)` x1.1, `((x))` x1.21, `(x:1.3)`, `[x]` /1.1, `\(` literal, `BREAK`
    /// starts a new chunk; weighted hidden states, then each chunk's original mean restored.
    case a1111
    /// ComfyUI's: `(x)` x1.1 nested, `(x:1.3)` replaces the outer weights, `\(` literal; square
    /// brackets and BREAK are plain text; z_empty + (z - z_empty) x w, no mean restore.
    case comfy
    /// No syntax: parentheses and brackets are plain text.
    case none
}

/// A piece of a parsed prompt: text and its weight, or a chunk break (A1111's `BREAK`).
public struct WeightedText: Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var weight: Double
    /// A `BREAK` keyword (A1111 only): the tokens after it start a new 75-token chunk.
    public var isBreak: Bool

    public init(_ text: String, _ weight: Double, isBreak: Bool = false) {
        self.text = text
        self.weight = weight
        self.isBreak = isBreak
    }

    public var description: String { isBreak ? "BREAK" : "\(text.debugDescription): \(weight)" }
}

/// Parsers of the prompt emphasis syntaxes.
public enum PromptParser {
    /// The prompt's pieces and weights under `style`.
    public static func parse(_ prompt: String, style: PromptWeighting) -> [WeightedText] {
        switch style {
        case .a1111: return parseA1111(prompt)
        case .comfy: return parseComfy(prompt)
        case .none: return [WeightedText(prompt, 1)]
        }
    }

    // MARK: - AUTOMATIC1111

    /// One token of A1111's `re_attention` pattern, in its alternation order.
    private enum A1111Token {
        case escaped(Character)         // \( \) \[ \] \\ ; a lone backslash stays a backslash
        case open(round: Bool)          // ( or [
        case weight(String, matched: String)  // ":" spaces number spaces ")"
        case close(round: Bool)         // ) or ]
        case text(String)               // a run without \ ( ) [ ] : , or a lone ":"
    }

    /// A1111's `parse_prompt_attention` (modules/prompt_parser.py): brackets open ranges whose
    /// weights multiply when they close; an explicit `(text:w)` multiplies by w; brackets left
    /// open at the end still apply; pieces with equal weights are merged.
    static func parseA1111(_ prompt: String) -> [WeightedText] {
        var result: [WeightedText] = []
        var round: [Int] = [], square: [Int] = []
        func multiply(from start: Int, by factor: Double) {
            for i in start..<result.count { result[i].weight *= factor }
        }
        for token in a1111Tokens(prompt) {
            switch token {
            case .escaped(let c): result.append(WeightedText(String(c), 1))
            case .open(round: true): round.append(result.count)
            case .open(round: false): square.append(result.count)
            case .weight(let number, _) where !round.isEmpty && Double(number) != nil:
                multiply(from: round.removeLast(), by: Double(number)!)
            case .close(round: true) where !round.isEmpty: multiply(from: round.removeLast(), by: 1.1)
            case .close(round: false) where !square.isEmpty: multiply(from: square.removeLast(), by: 1 / 1.1)
            case .weight(_, let matched): appendSplittingBreaks(matched, to: &result)
            case .close(let isRound): appendSplittingBreaks(isRound ? ")" : "]", to: &result)
            case .text(let text): appendSplittingBreaks(text, to: &result)
            }
        }
        for start in round { multiply(from: start, by: 1.1) }
        for start in square { multiply(from: start, by: 1 / 1.1) }
        if result.isEmpty { return [WeightedText("", 1)] }
        // Merge neighbours of equal weight (as A1111 does, BREAK markers included).
        var merged: [WeightedText] = [result[0]]
        for piece in result.dropFirst() {
            if piece.weight == merged[merged.count - 1].weight && piece.isBreak == merged[merged.count - 1].isBreak && !piece.isBreak {
                merged[merged.count - 1].text += piece.text
            } else {
                merged.append(piece)
            }
        }
        return merged
    }

    /// A1111 splits plain text at `\s*\bBREAK\b\s*`; each BREAK becomes a marker of weight -1.
    private static func appendSplittingBreaks(_ text: String, to result: inout [WeightedText]) {
        let pattern = try! NSRegularExpression(pattern: "\\s*\\bBREAK\\b\\s*", options: [.dotMatchesLineSeparators])
        let ns = text as NSString
        var start = 0
        for match in pattern.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            result.append(WeightedText(ns.substring(with: NSRange(location: start, length: match.range.location - start)), 1))
            result.append(WeightedText("BREAK", -1, isBreak: true))
            start = match.range.location + match.range.length
        }
        result.append(WeightedText(ns.substring(from: start), 1))
    }

    /// The tokens of A1111's `re_attention`:
    /// `\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:`
    private static func a1111Tokens(_ prompt: String) -> [A1111Token] {
        let chars = Array(prompt)
        var tokens: [A1111Token] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\\":
                if i + 1 < chars.count, "()[]\\".contains(chars[i + 1]) {
                    tokens.append(.escaped(chars[i + 1]))
                    i += 2
                } else {
                    tokens.append(.escaped("\\"))
                    i += 1
                }
            case "(", "[":
                tokens.append(.open(round: c == "("))
                i += 1
            case ")", "]":
                tokens.append(.close(round: c == ")"))
                i += 1
            case ":":
                if let (number, end) = weightSuffix(chars, from: i) {
                    tokens.append(.weight(number, matched: String(chars[i..<end])))
                    i = end
                } else {
                    tokens.append(.text(":"))
                    i += 1
                }
            default:
                var j = i
                while j < chars.count, !"\\()[]:".contains(chars[j]) { j += 1 }
                tokens.append(.text(String(chars[i..<j])))
                i = j
            }
        }
        return tokens
    }

    /// `:\s*([+-]?[.\d]+)\s*\)` at `start`: the number's text and the index after `)`.
    private static func weightSuffix(_ chars: [Character], from start: Int) -> (String, Int)? {
        var i = start + 1
        while i < chars.count, chars[i].isWhitespace { i += 1 }
        let numberStart = i
        if i < chars.count, chars[i] == "+" || chars[i] == "-" { i += 1 }
        let digitsStart = i
        while i < chars.count, chars[i] == "." || chars[i].isASCII && chars[i].isNumber { i += 1 }
        guard i > digitsStart else { return nil }
        let number = String(chars[numberStart..<i])
        while i < chars.count, chars[i].isWhitespace { i += 1 }
        guard i < chars.count, chars[i] == ")" else { return nil }
        return (number, i + 1)
    }

    // MARK: - ComfyUI

    /// ComfyUI's `token_weights` (comfy/sd1_clip.py): top-level parenthesised groups weigh 1.1
    /// times their surroundings, recursively; `(text:w)` sets the weight w instead; `\(` and `\)`
    /// are literal parentheses.
    static func parseComfy(_ prompt: String) -> [WeightedText] {
        // Escaped parentheses become private-use characters while parsing, as ComfyUI's \0\1 and \0\2.
        let escaped = prompt.replacingOccurrences(of: "\\)", with: "\u{F0001}").replacingOccurrences(of: "\\(", with: "\u{F0002}")
        return comfyWeights(escaped, weight: 1).map {
            WeightedText($0.text.replacingOccurrences(of: "\u{F0001}", with: ")").replacingOccurrences(of: "\u{F0002}", with: "("), $0.weight)
        }
    }

    private static func comfyWeights(_ text: String, weight current: Double) -> [WeightedText] {
        var out: [WeightedText] = []
        for group in comfyGroups(text) {
            guard group.count >= 2, group.first == "(", group.last == ")" else {
                out.append(WeightedText(group, current))
                continue
            }
            var inner = String(group.dropFirst().dropLast())
            var weight = current * 1.1
            if let colon = inner.lastIndex(of: ":"), colon != inner.startIndex,
               let explicit = pythonFloat(String(inner[inner.index(after: colon)...])) {
                weight = explicit
                inner = String(inner[..<colon])
            }
            out += comfyWeights(inner, weight: weight)
        }
        return out
    }

    /// ComfyUI's `parse_parentheses`: the text split into top-level "(...)" groups and the text between.
    private static func comfyGroups(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        var depth = 0
        for c in text {
            if c == "(" {
                if depth == 0 {
                    if !current.isEmpty { result.append(current) }
                    current = "("
                } else {
                    current.append(c)
                }
                depth += 1
            } else if c == ")" {
                depth -= 1
                if depth == 0 {
                    result.append(current + ")")
                    current = ""
                } else {
                    current.append(c)
                }
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// Python's `float(text)` for finite numbers: optional spaces and sign, digits with one optional
    /// point, optional exponent; nil where Python raises (ComfyUI then keeps the text). Infinities
    /// and NaN, which Python accepts, are kept as text too: they would only give NaN conditioning.
    static func pythonFloat(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.range(of: "^[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?$", options: .regularExpression) != nil else { return nil }
        return Double(trimmed).flatMap { $0.isFinite ? $0 : nil }
    }
}
