/// CLIP's pre-tokenisation: the `regex`-module pattern
///
///     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
///
/// compiled with IGNORECASE and applied to normalised (lower-cased) text, written as a scanner
/// over Unicode scalars. Alternatives are tried in order at each position, as the regex engine
/// does; whitespace between matches is skipped. Under IGNORECASE, U+0345 (which case-folds to a
/// letter) matches no alternative, so it is skipped too, and "'ſ" matches "'s".
enum CLIPPreTokenizer {
    static func split(_ text: String) -> [Substring] {
        let scalars = text.unicodeScalars
        var words: [Substring] = []
        var i = scalars.startIndex
        while i < scalars.endIndex {
            let c = scalars[i]
            if let end = special(scalars, at: i) ?? contraction(scalars, at: i) {
                words.append(Substring(scalars[i..<end]))
                i = end
            } else if isLetter(c) {
                var end = scalars.index(after: i)
                while end < scalars.endIndex && isLetter(scalars[end]) { end = scalars.index(after: end) }
                words.append(Substring(scalars[i..<end]))
                i = end
            } else if isNumber(c) {
                let end = scalars.index(after: i)
                words.append(Substring(scalars[i..<end]))
                i = end
            } else if isSpace(c) || c == ypogegrammeni {
                i = scalars.index(after: i)
            } else {
                var end = scalars.index(after: i)
                while end < scalars.endIndex && !isSpace(scalars[end]) && !isLetter(scalars[end]) && !isNumber(scalars[end])
                        && scalars[end] != ypogegrammeni {
                    end = scalars.index(after: end)
                }
                words.append(Substring(scalars[i..<end]))
                i = end
            }
        }
        return words
    }

    /// U+0345 COMBINING GREEK YPOGEGRAMMENI.
    private static let ypogegrammeni: Unicode.Scalar = "\u{0345}"

    private static let specials = [CLIPTokenizer.startText, CLIPTokenizer.endText].map { Array($0.unicodeScalars) }
    private static let contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }

    private static func special(_ s: String.UnicodeScalarView, at i: String.UnicodeScalarView.Index) -> String.UnicodeScalarView.Index? {
        match(specials, s, at: i, caseInsensitive: false)
    }

    /// The contractions match case-insensitively (the pattern is compiled with IGNORECASE).
    private static func contraction(_ s: String.UnicodeScalarView, at i: String.UnicodeScalarView.Index) -> String.UnicodeScalarView.Index? {
        match(contractions, s, at: i, caseInsensitive: true)
    }

    private static func match(_ candidates: [[Unicode.Scalar]], _ s: String.UnicodeScalarView, at i: String.UnicodeScalarView.Index,
                              caseInsensitive: Bool) -> String.UnicodeScalarView.Index? {
        guard s[i] == candidates[0][0] else { return nil }
        for candidate in candidates {
            var j = i
            var ok = true
            for expected in candidate {
                guard j < s.endIndex else { ok = false; break }
                let actual = s[j]
                let equal = caseInsensitive ? fold(actual) == fold(expected) : actual == expected
                if !equal { ok = false; break }
                j = s.index(after: j)
            }
            if ok { return j }
        }
        return nil
    }

    /// Simple case folding for the contractions' letters (ſ folds to s).
    private static func fold(_ c: Unicode.Scalar) -> String {
        c == "\u{017F}" ? "s" : c.properties.lowercaseMapping
    }

    /// \p{L}: general categories Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// \p{N}: general categories Nd, Nl, No.
    static func isNumber(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// \s of the `regex` module on str patterns: Unicode White_Space.
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }
}
