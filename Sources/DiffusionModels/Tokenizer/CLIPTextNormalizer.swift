import Foundation

/// The text cleanup before CLIP tokenisation, as transformers' slow `CLIPTokenizer` does it:
/// `whitespace_clean(ftfy.fix_text(text)).lower()`.
///
/// This ports ftfy 6.3.1's `fix_text` with its default settings, step for step: per line, and
/// repeated until nothing changes, HTML entities are decoded (not on lines from the first one
/// holding a `<`), C1 controls read as Windows-1252, Latin ligatures split, full-width forms
/// narrowed, curly quotes straightened, line breaks unified, terminal escapes and control
/// characters removed, then NFC. Left out: ftfy's mojibake repair (`fix_encoding`), a
/// heuristic that only changes text already garbled by a wrong encoding (e.g. "cafÃ©").
/// Then runs of Unicode whitespace become one space, and `lower()` applies Python's full
/// lowercase mapping with the final-sigma rule.
enum CLIPTextNormalizer {
    static func normalize(_ text: String) -> String {
        lowercase(collapseWhitespace(fixText(text)))
    }

    // MARK: - ftfy.fix_text

    static func fixText(_ text: String) -> String {
        var output = ""
        var unescape = true
        var segment = Substring(text)
        // Lines (each with its "\n") are fixed separately; a line with "<" turns HTML decoding off for the rest.
        while !segment.isEmpty {
            let end = segment.firstIndex(of: "\n").map { segment.index(after: $0) } ?? segment.endIndex
            let line = String(segment[..<end])
            if line.contains("<") { unescape = false }
            output += fixLine(line, unescapeHTML: unescape)
            segment = segment[end...]
        }
        return output
    }

    private static func fixLine(_ line: String, unescapeHTML: Bool) -> String {
        var text = line
        while true {
            var scalars = Array(text.unicodeScalars)
            if unescapeHTML { scalars = HTMLEntities.unescape(scalars) }
            scalars = scalars.flatMap(fixCharacter)
            scalars = unifyLineBreaks(scalars)
            scalars = removeTerminalEscapes(scalars)
            scalars.removeAll(where: isRemovedControl)
            var fixed = String(String.UnicodeScalarView(scalars))
            fixed = fixed.precomposedStringWithCanonicalMapping
            if fixed == text { return fixed }
            text = fixed
        }
    }

    /// fix_c1_controls, fix_latin_ligatures, fix_character_width and uncurl_quotes, in that order.
    private static func fixCharacter(_ c: Unicode.Scalar) -> [Unicode.Scalar] {
        [c].map(c1Control).flatMap(ligature).flatMap(narrow).flatMap(uncurl)
    }

    private static func c1Control(_ c: Unicode.Scalar) -> Unicode.Scalar {
        (0x80...0x9F).contains(c.value) ? windows1252[c.value] ?? c : c
    }

    private static func ligature(_ c: Unicode.Scalar) -> [Unicode.Scalar] {
        ligatures[c].map { Array($0.unicodeScalars) } ?? [c]
    }

    private static func narrow(_ c: Unicode.Scalar) -> [Unicode.Scalar] {
        if c.value == 0x3000 { return [" "] }
        return widthMap[c.value].map { Array($0.unicodeScalars) } ?? [c]
    }

    private static func uncurl(_ c: Unicode.Scalar) -> [Unicode.Scalar] {
        switch c.value {
        case 0x201C...0x201F: return ["\""]
        case 0x02BC, 0x2018...0x201B: return ["'"]
        default: return [c]
        }
    }

    /// Windows-1252 for the C1 range, except the five bytes it leaves undefined.
    private static let windows1252: [UInt32: Unicode.Scalar] = {
        let table: [UInt32] = [0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
                               0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                               0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178]
        var map: [UInt32: Unicode.Scalar] = [:]
        for (i, v) in table.enumerated() { map[0x80 + UInt32(i)] = Unicode.Scalar(v)! }
        return map
    }()

    private static let ligatures: [Unicode.Scalar: String] = [
        "\u{0132}": "IJ", "\u{0133}": "ij", "\u{0149}": "\u{02BC}n", "\u{01F1}": "DZ", "\u{01F2}": "Dz", "\u{01F3}": "dz",
        "\u{01C4}": "D\u{017D}", "\u{01C5}": "D\u{017E}", "\u{01C6}": "d\u{017E}", "\u{01C7}": "LJ", "\u{01C8}": "Lj",
        "\u{01C9}": "lj", "\u{01CA}": "NJ", "\u{01CB}": "Nj", "\u{01CC}": "nj", "\u{FB00}": "ff", "\u{FB01}": "fi",
        "\u{FB02}": "fl", "\u{FB03}": "ffi", "\u{FB04}": "ffl", "\u{FB05}": "\u{017F}t", "\u{FB06}": "st",
    ]

    /// U+FF01...U+FFEF -> their NFKC form where it differs (full-width ASCII, half-width kana and Hangul, ...).
    private static let widthMap: [UInt32: String] = {
        var map: [UInt32: String] = [:]
        for v in UInt32(0xFF01)...0xFFEF {
            guard let scalar = Unicode.Scalar(v), scalar.properties.generalCategory != .unassigned else { continue }
            let s = String(Character(scalar))
            let nfkc = s.precomposedStringWithCompatibilityMapping
            if nfkc != s { map[v] = nfkc }
        }
        return map
    }()

    /// fix_line_breaks: CRLF, CR, U+2028, U+2029 and U+0085 become LF.
    private static func unifyLineBreaks(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            switch s[i].value {
            case 0x0D:
                out.append("\n")
                if i + 1 < s.count && s[i + 1] == "\n" { i += 1 }
            case 0x2028, 0x2029, 0x85: out.append("\n")
            default: out.append(s[i])
            }
            i += 1
        }
        return out
    }

    /// remove_terminal_escapes: ESC "[" (digits or ";")* letter.
    private static func removeTerminalEscapes(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < s.count {
            if s[i] == "\u{1B}" && i + 1 < s.count && s[i + 1] == "[" {
                var j = i + 2
                while j < s.count && (s[j] == ";" || s[j].properties.generalCategory == .decimalNumber) { j += 1 }
                if j < s.count && s[j].isASCII && s[j].properties.isAlphabetic {
                    i = j + 1
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    /// remove_control_chars: C0 controls other than tab, LF, FF and CR, DEL, U+206A-206F, BOM, U+FFF9-FFFC.
    private static func isRemovedControl(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC: return true
        default: return false
        }
    }

    // MARK: - whitespace_clean and lower()

    /// The `regex` module's `re.sub(r"\s+", " ", text).strip()`: runs of Unicode White_Space become one space.
    static func collapseWhitespace(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            if scalar.properties.isWhitespace {
                pendingSpace = true
            } else {
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// Python's `str.lower()`: the full lowercase mapping of each character, except that a
    /// capital sigma at the end of a word (preceded by a cased letter and not followed by one,
    /// case-ignorable characters skipped) becomes the final form ς.
    static func lowercase(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        for (i, c) in s.enumerated() {
            if c == "\u{03A3}" && isFinalSigma(s, at: i) {
                out.append("\u{03C2}")
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return String(out)
    }

    private static func isFinalSigma(_ s: [Unicode.Scalar], at i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && s[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && s[j].properties.isCased else { return false }
        var k = i + 1
        while k < s.count && s[k].properties.isCaseIgnorable { k += 1 }
        return !(k < s.count && s[k].properties.isCased)
    }
}

/// ftfy's HTML entity decoding (`unescape_html`): `&name;` from its table of HTML5 names (and
/// their upper-case forms), and numeric references as Python's `html.unescape` decodes them,
/// except references that decode to ";" and ones html.unescape only partly decodes.
enum HTMLEntities {
    /// The table's data file (`SDFlowData`), written by tools/reference/make_html_entities.py.
    static let file = "tokenizer/html_entities.json"

    /// "&name;" -> replacement. (`BPEVocabulary.bundled()` checks that the file is there.)
    static let table: [String: String] = {
        guard let path = try? SDFlowData.path(file), let data = FileManager.default.contents(atPath: path),
              let table = try? JSONSerialization.jsonObject(with: data) as? [String: String] else { return [:] }
        return table
    }()

    /// Replaces every match of `&#?[0-9A-Za-z]{1,24};`, scanning left to right without rescanning replacements.
    static func unescape(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard s.contains("&") else { return s }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < s.count {
            if s[i] == "&", let (end, replacement) = match(s, at: i) {
                out.append(contentsOf: replacement)
                i = end
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    private static func isAlphanumericASCII(_ c: Unicode.Scalar) -> Bool {
        c.isASCII && (("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c))
    }

    /// The end and replacement of an entity starting at `i`, or nil when none matches or it stays as is.
    private static func match(_ s: [Unicode.Scalar], at i: Int) -> (Int, [Unicode.Scalar])? {
        var j = i + 1
        let numeric = j < s.count && s[j] == "#"
        if numeric { j += 1 }
        let bodyStart = j
        while j < s.count && j - bodyStart < 24 && isAlphanumericASCII(s[j]) { j += 1 }
        guard j > bodyStart, j < s.count, s[j] == ";" else { return nil }
        let end = j + 1
        let entity = String(String.UnicodeScalarView(s[i..<end]))
        if let replacement = table[entity] { return (end, Array(replacement.unicodeScalars)) }
        guard numeric else { return nil }
        let body = String(String.UnicodeScalarView(s[bodyStart..<j]))
        guard let value = numericValue(body) else { return nil }
        guard let decoded = decodeReference(value) else { return nil }
        return (end, decoded)
    }

    /// Decimal digits, or x/X and hex digits; nil for anything else.
    private static func numericValue(_ body: String) -> UInt64? {
        if let first = body.first, first == "x" || first == "X" {
            let hex = body.dropFirst()
            guard !hex.isEmpty, hex.allSatisfy(\.isHexDigit) else { return nil }
            return UInt64(hex.count > 12 ? "FFFFFFFFFFFF" : String(hex), radix: 16)
        }
        guard body.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return body.count > 15 ? UInt64.max : UInt64(body)
    }

    /// Python's `html._replace_charref`, with ftfy's rule that a result containing ";" is not decoded.
    private static func decodeReference(_ n: UInt64) -> [Unicode.Scalar]? {
        if n == 0 { return ["\u{FFFD}"] }
        if n == 0x3B { return nil }  // ";" itself: ftfy keeps the reference
        if n >= 0x80 && n <= 0x9F {
            let c1: [UInt32] = [0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
                                0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178]
            return [Unicode.Scalar(c1[Int(n - 0x80)])!]
        }
        if (0xD800...0xDFFF).contains(n) || n > 0x10FFFF { return ["\u{FFFD}"] }
        let v = UInt32(n)
        switch v {
        case 0x01...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0xFDD0...0xFDEF: return []
        default:
            if v & 0xFFFE == 0xFFFE { return [] }  // U+xFFFE and U+xFFFF of every plane
            return [Unicode.Scalar(v)!]
        }
    }
}
