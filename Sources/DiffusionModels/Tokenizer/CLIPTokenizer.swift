import Foundation
import Synchronization

/// The CLIP tokenizer of SD 1.x (openai/clip-vit-large-patch14), matching transformers'
/// `CLIPTokenizer` with ftfy (as diffusers and ComfyUI use it):
/// text cleanup (`CLIPTextNormalizer`), CLIP's pre-tokenisation pattern (`CLIPPreTokenizer`),
/// byte-to-unicode mapping, BPE merges with `</w>` word ends, then BOS 49406, the tokens,
/// EOS 49407 and EOS padding to 77. Longer prompts are truncated, keeping EOS last.
///
///     "a photo of an astronaut riding a horse on mars"
///     -> [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407, 49407, ...]
public final class CLIPTokenizer: Sendable {
    /// Token strings of the special tokens.
    public static let startText = "<|startoftext|>", endText = "<|endoftext|>"
    /// The context length of SD 1.x's text encoder.
    public static let contextLength = 77

    public let vocabulary: BPEVocabulary
    /// Id of `<|startoftext|>` (49406 for CLIP).
    public let startID: Int
    /// Id of `<|endoftext|>` (49407 for CLIP), also used for padding.
    public let endID: Int

    /// BPE ids of words seen so far.
    private let cache = Mutex<[String: [Int]]>([:])

    /// A tokenizer over `vocabulary`; throws when the special tokens are missing.
    public init(vocabulary: BPEVocabulary) throws {
        guard let start = vocabulary.ids[CLIPTokenizer.startText], let end = vocabulary.ids[CLIPTokenizer.endText] else {
            throw BPEVocabulary.LoadError.malformed(path: "tokenizer", reason: "the vocabulary lacks <|startoftext|> or <|endoftext|>")
        }
        self.vocabulary = vocabulary
        startID = start
        endID = end
    }

    /// The tokenizer with sdflow's bundled vocabulary.
    public static func bundled() throws -> CLIPTokenizer { try CLIPTokenizer(vocabulary: .bundled()) }

    /// The tokenizer of a diffusers `tokenizer/` folder (vocab.json + merges.txt, or tokenizer.json).
    public convenience init(folder: String) throws {
        try self.init(vocabulary: .fromFolder(folder))
    }

    // MARK: - Encoding

    /// A prompt's ids, padded or truncated to the context length.
    public struct Encoding: Sendable, Equatable {
        /// BOS, tokens, EOS, EOS padding: exactly `contextLength` ids.
        public let ids: [Int]
        /// The number of prompt tokens that did not fit (0 when nothing was cut).
        public let droppedTokenCount: Int
        /// The part of the normalised prompt that was cut off, for warnings ("" when nothing was cut).
        public let droppedText: String

        /// The ids with the padding after the first end token replaced by `pad` (SDXL's second
        /// tokenizer, OpenCLIP's, pads with "!", id 0).
        public func ids(paddingWith pad: Int, endID: Int = 49407) -> [Int] {
            guard let end = ids.firstIndex(of: endID) else { return ids }
            return Array(ids[...end]) + Array(repeating: pad, count: ids.count - end - 1)
        }
    }

    /// The token ids of `text` without BOS/EOS.
    public func tokens(_ text: String) -> [Int] {
        pieces(text).flatMap(\.ids)
    }

    /// BOS + tokens + EOS, truncated (EOS kept last) and padded with EOS to `length`.
    public func encode(_ text: String, length: Int = CLIPTokenizer.contextLength) -> Encoding {
        let pieces = pieces(text)
        let capacity = length - 2
        var ids = [startID]
        var dropped = 0
        var droppedText = ""
        for piece in pieces {
            for id in piece.ids {
                if ids.count - 1 < capacity { ids.append(id) } else { dropped += 1 }
            }
            if dropped > 0 && droppedText.isEmpty { droppedText = piece.text }
            else if dropped > 0 { droppedText += " " + piece.text }
        }
        ids.append(endID)
        while ids.count < length { ids.append(endID) }
        return Encoding(ids: ids, droppedTokenCount: dropped, droppedText: droppedText)
    }

    /// One pre-tokenised word and its BPE ids.
    private struct Piece { let text: String; let ids: [Int] }

    /// The text is cut at literal special tokens first; each part between them is cleaned up
    /// and pre-tokenised on its own (as transformers splits added tokens before `_tokenize`).
    private func pieces(_ text: String) -> [Piece] {
        var pieces: [Piece] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            let start = rest.range(of: CLIPTokenizer.startText), end = rest.range(of: CLIPTokenizer.endText)
            let special = [start, end].compactMap { $0 }.min { $0.lowerBound < $1.lowerBound }
            let plain = rest[..<(special?.lowerBound ?? rest.endIndex)]
            if !plain.isEmpty {
                for word in CLIPPreTokenizer.split(CLIPTextNormalizer.normalize(String(plain))) {
                    pieces.append(Piece(text: String(word), ids: bpe(word)))
                }
            }
            guard let special else { break }
            pieces.append(Piece(text: String(rest[special]), ids: [special == start ? startID : endID]))
            rest = rest[special.upperBound...]
        }
        return pieces
    }

    /// The BPE ids of one pre-tokenised word (cached).
    private func bpe(_ word: Substring) -> [Int] {
        let key = String(word)
        if key == CLIPTokenizer.startText { return [startID] }
        if key == CLIPTokenizer.endText { return [endID] }
        if let hit = cache.withLock({ $0[key] }) { return hit }

        var symbols = ByteEncoder.encode(word)
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        // Repeatedly merge the adjacent pair with the lowest rank, everywhere it occurs.
        while symbols.count > 1 {
            var best: (rank: Int, pair: BPEVocabulary.SymbolPair)?
            for i in 0..<(symbols.count - 1) {
                let pair = BPEVocabulary.SymbolPair(first: symbols[i], second: symbols[i + 1])
                if let rank = vocabulary.ranks[pair], rank < (best?.rank ?? Int.max) { best = (rank, pair) }
            }
            guard let (_, pair) = best else { break }
            var merged: [String] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == pair.first && symbols[i + 1] == pair.second {
                    merged.append(pair.first + pair.second)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        // Every byte symbol is in the vocabulary, so unknown ids cannot occur with CLIP's
        // vocabulary; a foreign vocabulary maps them to <|endoftext|> as transformers does.
        let ids = symbols.map { vocabulary.ids[$0] ?? endID }
        cache.withLock { if $0.count < 100_000 { $0[key] = ids } }
        return ids
    }
}
