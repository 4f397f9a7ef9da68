import Foundation

/// The text cleanup before CLIP tokenisation, as transformers' slow `CLIPTokenizer` does it:
/// `whitespace_clean(ftfy.fix_text(text)).lower()`.
enum CLIPTextNormalizer {
    static func normalize(_ text: String) -> String {
        let fixed = text.precomposedStringWithCanonicalMapping
        return lowercase(collapseWhitespace(fixed))
    }

    /// Python's `re.sub(r"\s+", " ", text).strip()`.
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

    /// Python's `str.lower()`: full lowercase mapping per code point.
    static func lowercase(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
        return String(out)
    }
}
