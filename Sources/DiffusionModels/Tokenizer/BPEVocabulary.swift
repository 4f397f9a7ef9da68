import CGunzip
import Foundation

/// CLIP's byte-level BPE vocabulary: token strings to ids, and merge ranks.
///
/// Loaded either from the bundled `bpe_simple_vocab_16e6.txt.gz` (OpenAI CLIP's merges, MIT
/// licence, as shipped by open_clip), where the ids are derived from the merges exactly as
/// open_clip and openai/clip-vit-large-patch14's `vocab.json` number them, or from a
/// diffusers `tokenizer/` folder (`vocab.json` + `merges.txt`, or `tokenizer.json`).
public struct BPEVocabulary: Sendable {
    /// Token string (in the byte-to-unicode alphabet, words ending in `</w>`) to id.
    public let ids: [String: Int]
    /// Merge rank of a pair of symbols ("a b" -> rank); lower merges first.
    let ranks: [SymbolPair: Int]

    /// A pair of adjacent BPE symbols.
    struct SymbolPair: Hashable, Sendable {
        let first: String, second: String
    }

    /// Errors reading vocabulary files, naming the file.
    public enum LoadError: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case malformed(path: String, reason: String)

        public var description: String {
            switch self {
            case let .unreadable(path, reason): return "\(path): cannot read tokenizer file: \(reason)"
            case let .malformed(path, reason): return "\(path): not a CLIP tokenizer file: \(reason)"
            }
        }
    }

    init(ids: [String: Int], merges: [(String, String)]) {
        self.ids = ids
        var ranks: [SymbolPair: Int] = [:]
        ranks.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() where ranks[SymbolPair(first: merge.0, second: merge.1)] == nil {
            ranks[SymbolPair(first: merge.0, second: merge.1)] = rank
        }
        self.ranks = ranks
    }

    // MARK: - Bundled vocabulary

    /// The vocabulary that comes with sdflow (49408 tokens, 48894 merges; `SDFlowData`). The
    /// HTML-entity table of the text normaliser comes with it and must be there too.
    public static func bundled() throws -> BPEVocabulary {
        _ = try SDFlowData.path(HTMLEntities.file)
        return try fromOpenCLIPMerges(gzipPath: try SDFlowData.path("tokenizer/bpe_simple_vocab_16e6.txt.gz"))
    }

    /// Reads open_clip's gzip-compressed merges file and numbers the vocabulary as open_clip does:
    /// the 256 byte symbols, the same with `</w>`, one token per merge, then the two specials.
    public static func fromOpenCLIPMerges(gzipPath: String) throws -> BPEVocabulary {
        let text = try gunzip(path: gzipPath)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let mergeCount = 49152 - 256 - 2
        guard lines.count > mergeCount else {
            throw LoadError.malformed(path: gzipPath, reason: "expected at least \(mergeCount + 1) lines, found \(lines.count)")
        }
        let merges = try lines[1...mergeCount].map { try parseMerge($0, path: gzipPath) }
        var tokens = ByteEncoder.alphabet
        tokens += ByteEncoder.alphabet.map { $0 + "</w>" }
        tokens += merges.map { $0.0 + $0.1 }
        tokens += [CLIPTokenizer.startText, CLIPTokenizer.endText]
        var ids: [String: Int] = [:]
        for (id, token) in tokens.enumerated() { ids[token] = id }
        return BPEVocabulary(ids: ids, merges: merges)
    }

    // MARK: - diffusers / transformers files

    /// Reads a `vocab.json` (token -> id) and `merges.txt` ("#version" header, "a b" per line).
    public static func fromFiles(vocabJSON: String, merges mergesPath: String) throws -> BPEVocabulary {
        guard let data = FileManager.default.contents(atPath: vocabJSON) else {
            throw LoadError.unreadable(path: vocabJSON, reason: "no such file or not readable")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw LoadError.malformed(path: vocabJSON, reason: "not a JSON object of token ids")
        }
        var ids: [String: Int] = [:]
        for (token, value) in dict {
            guard let id = value as? Int else { throw LoadError.malformed(path: vocabJSON, reason: "id of '\(token)' is not an integer") }
            ids[token] = id
        }
        guard let mergeData = FileManager.default.contents(atPath: mergesPath), let text = String(data: mergeData, encoding: .utf8) else {
            throw LoadError.unreadable(path: mergesPath, reason: "no such file or not UTF-8")
        }
        let merges = try text.split(separator: "\n").filter { !$0.hasPrefix("#version") && !$0.isEmpty }
            .map { try parseMerge($0, path: mergesPath) }
        return BPEVocabulary(ids: ids, merges: merges)
    }

    /// Reads a tokenizers-library `tokenizer.json` with a BPE model (`model.vocab`, `model.merges`
    /// as "a b" strings or [a, b] pairs), as transformers 5 saves tokenizer folders.
    public static func fromTokenizerJSON(_ path: String) throws -> BPEVocabulary {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError.unreadable(path: path, reason: "no such file or not readable")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = object["model"] as? [String: Any], (model["type"] as? String ?? "BPE") == "BPE",
              let vocab = model["vocab"] as? [String: Any], let mergeList = model["merges"] as? [Any] else {
            throw LoadError.malformed(path: path, reason: "not a tokenizer.json with a BPE model")
        }
        var ids: [String: Int] = [:]
        for (token, value) in vocab {
            guard let id = value as? Int else { throw LoadError.malformed(path: path, reason: "id of '\(token)' is not an integer") }
            ids[token] = id
        }
        let merges = try mergeList.map { item -> (String, String) in
            if let line = item as? String { return try parseMerge(Substring(line), path: path) }
            if let pair = item as? [String], pair.count == 2 { return (pair[0], pair[1]) }
            throw LoadError.malformed(path: path, reason: "a merge is neither \"a b\" nor [a, b]")
        }
        return BPEVocabulary(ids: ids, merges: merges)
    }

    /// A diffusers `tokenizer/` folder: `vocab.json` + `merges.txt`, or else `tokenizer.json`.
    public static func fromFolder(_ folder: String) throws -> BPEVocabulary {
        let manager = FileManager.default
        if manager.fileExists(atPath: folder + "/vocab.json") && manager.fileExists(atPath: folder + "/merges.txt") {
            return try fromFiles(vocabJSON: folder + "/vocab.json", merges: folder + "/merges.txt")
        }
        if manager.fileExists(atPath: folder + "/tokenizer.json") { return try fromTokenizerJSON(folder + "/tokenizer.json") }
        throw LoadError.unreadable(path: folder, reason: "no vocab.json and merges.txt, and no tokenizer.json")
    }

    /// Whether `folder` holds tokenizer files `fromFolder` can read.
    public static func isTokenizerFolder(_ folder: String) -> Bool {
        let manager = FileManager.default
        return (manager.fileExists(atPath: folder + "/vocab.json") && manager.fileExists(atPath: folder + "/merges.txt"))
            || manager.fileExists(atPath: folder + "/tokenizer.json")
    }

    private static func parseMerge(_ line: Substring, path: String) throws -> (String, String) {
        let parts = line.split(separator: " ")
        guard parts.count == 2 else { throw LoadError.malformed(path: path, reason: "merge line '\(line)' is not two symbols") }
        return (String(parts[0]), String(parts[1]))
    }

    private static func gunzip(path: String) throws -> String {
        guard let file = gzopen(path, "rb") else { throw LoadError.unreadable(path: path, reason: "cannot open") }
        defer { gzclose(file) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 { throw LoadError.unreadable(path: path, reason: "corrupt gzip data") }
            if n == 0 { break }
            data.append(buffer, count: Int(n))
        }
        guard let text = String(data: data, encoding: .utf8) else { throw LoadError.malformed(path: path, reason: "not UTF-8") }
        return text
    }
}

/// GPT-2/CLIP's reversible mapping of the 256 byte values to printable unicode characters,
/// so that BPE works on strings without whitespace or control characters.
enum ByteEncoder {
    /// The character for each byte value, in byte order.
    static let characters: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var codes = printable
        var extra = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, codes) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    /// The byte symbols in vocabulary order (open_clip numbers them as `bytes_to_unicode().values()`,
    /// i.e. the printable bytes first, then the remapped ones).
    static let alphabet: [String] = {
        let printable = Array(33...126) + Array(161...172) + Array(174...255)
        let rest = (0..<256).filter { !printable.contains($0) }
        return (printable + rest).map { String(characters[$0]) }
    }()

    /// The UTF-8 bytes of `text` in the byte alphabet.
    static func encode(_ text: Substring) -> [String] {
        text.utf8.map { String(characters[Int($0)]) }
    }
}
