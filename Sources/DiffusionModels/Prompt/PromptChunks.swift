import Foundation
import TensorCore

/// A prompt cut into CLIP chunks as AUTOMATIC1111 does: 75 tokens each, between BOS and EOS, with
/// a weight per token. Prompts of any length become as many chunks as they need.
public struct PromptChunks: Equatable, Sendable {
    /// Token ids, one row of `CLIPTokenizer.contextLength` (77) per chunk: BOS, 75 tokens or EOS padding, EOS.
    public var ids: [[Int]]
    /// The weight of each id (1 for BOS, EOS and padding).
    public var weights: [[Float]]
    /// The number of the prompt's own tokens in each chunk (without BOS, EOS and padding).
    public var lengths: [Int]
    /// Textual-inversion vectors; the id `embeddingBase + i` in `ids` stands for row i.
    public var vectors: [[Float]] = []
    /// What each vector is, for display: "<name> 1/2".
    public var vectorNames: [String] = []

    /// The first id that stands for an embedding vector rather than a vocabulary token.
    public static let embeddingBase = 1 << 30

    /// The prompt's own tokens in all chunks.
    public var tokenCount: Int { lengths.reduce(0, +) }

    /// Whether any token weighs other than 1.
    public var isWeighted: Bool { weights.contains { $0.contains { $0 != 1 } } }
}

extension CLIPTokenizer {
    /// Prompt tokens per chunk.
    public static let chunkLength = 75
    /// When a chunk fills up, text after a comma within this many tokens moves to the next chunk
    /// (A1111's `comma_padding_backtrack`).
    public static let commaBacktrack = 20

    /// `prompt` parsed with `weighting` and cut into chunks by A1111's rule (`tokenize_line` in
    /// modules/sd_hijack_clip.py): each parsed piece is tokenized on its own; a full chunk starts
    /// the next one, at the last comma if it is within `commaBacktrack` tokens; BREAK ends a chunk.
    /// Embeddings from `embeddings` replace their name (A1111: the bare name as a word; ComfyUI:
    /// `embedding:name`) with their vectors, moved whole to the next chunk when they do not fit.
    /// Throws when `embedding:name` names no embedding, or one that could not be read.
    public func chunks(_ prompt: String, weighting: PromptWeighting, embeddings: EmbeddingLibrary = EmbeddingLibrary()) throws -> PromptChunks {
        let comma = vocabulary.ids[",</w>"]
        var result = PromptChunks(ids: [], weights: [], lengths: [])
        var tokens: [Int] = [], weights: [Float] = []
        var lastComma = -1
        func closeChunk() {
            result.lengths.append(tokens.count)
            let padding = CLIPTokenizer.chunkLength - tokens.count
            result.ids.append([startID] + tokens + Array(repeating: endID, count: padding) + [endID])
            result.weights.append([1] + weights + Array(repeating: 1, count: padding) + [1])
            tokens = []
            weights = []
            lastComma = -1
        }
        /// The ids of an embedding's vectors (added to `result.vectors` on first use).
        var embeddingIDs: [String: [Int]] = [:]
        func ids(of embedding: TextualInversion) -> [Int] {
            if let known = embeddingIDs[embedding.name] { return known }
            let rows = (0..<embedding.vectors.shape[0]).map { r in
                Array(UnsafeBufferPointer(start: embedding.vectors.pointer + r * embedding.vectors.shape[1], count: embedding.vectors.shape[1]))
            }
            let new = (0..<rows.count).map { PromptChunks.embeddingBase + result.vectors.count + $0 }
            result.vectors += rows
            result.vectorNames += (0..<rows.count).map { "\(embedding.name) \($0 + 1)/\(rows.count)" }
            embeddingIDs[embedding.name] = new
            return new
        }
        // A1111 finds embeddings by their names' tokens in the token stream (longest name first).
        let named = embeddings.embeddings.values.map { (tokens: self.tokens($0.name), embedding: $0) }
            .filter { !$0.tokens.isEmpty }.sorted { $0.tokens.count > $1.tokens.count }

        func add(_ token: Int, weight: Float) {
            if token == comma {
                lastComma = tokens.count
            } else if tokens.count == CLIPTokenizer.chunkLength && lastComma != -1
                        && tokens.count - lastComma <= CLIPTokenizer.commaBacktrack {
                let moved = (tokens: Array(tokens[(lastComma + 1)...]), weights: Array(weights[(lastComma + 1)...]))
                tokens.removeSubrange((lastComma + 1)...)
                weights.removeSubrange((lastComma + 1)...)
                closeChunk()
                (tokens, weights) = moved
            }
            if tokens.count == CLIPTokenizer.chunkLength { closeChunk() }
        }
        func addEmbedding(_ embedding: TextualInversion, weight: Float) {
            let vectorIDs = ids(of: embedding)
            if tokens.count + vectorIDs.count > CLIPTokenizer.chunkLength { closeChunk() }
            tokens += vectorIDs
            weights += Array(repeating: weight, count: vectorIDs.count)
        }
        for piece in PromptParser.parse(prompt, style: weighting) {
            if piece.isBreak {
                closeChunk()
                continue
            }
            let weight = Float(piece.weight)
            for segment in try CLIPTokenizer.embeddingSyntax(piece.text, embeddings) {
                switch segment {
                case .embedding(let embedding):
                    add(-1, weight: weight)  // the checks A1111 makes before every token
                    addEmbedding(embedding, weight: weight)
                case .text(let text):
                    let pieceTokens = self.tokens(text)
                    var position = 0
                    while position < pieceTokens.count {
                        add(pieceTokens[position], weight: weight)
                        if let match = named.first(where: { pieceTokens[position...].starts(with: $0.tokens) }) {
                            addEmbedding(match.embedding, weight: weight)
                            position += match.tokens.count
                        } else {
                            tokens.append(pieceTokens[position])
                            weights.append(weight)
                            position += 1
                        }
                    }
                }
            }
        }
        if !tokens.isEmpty || result.ids.isEmpty { closeChunk() }
        return result
    }

    /// Text, or a ComfyUI-style `embedding:name` reference.
    enum PromptSegment { case text(String), embedding(TextualInversion) }

    /// `text` cut at `embedding:name` references (name up to a space, comma or bracket; a
    /// `.safetensors` extension is allowed).
    static func embeddingSyntax(_ text: String, _ library: EmbeddingLibrary) throws -> [PromptSegment] {
        guard text.contains("embedding:") else { return [.text(text)] }
        let pattern = try! NSRegularExpression(pattern: "embedding:([^\\s,()\\[\\]]+)")
        let ns = text as NSString
        var segments: [PromptSegment] = []
        var start = 0
        for match in pattern.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            var name = ns.substring(with: match.range(at: 1))
            for ext in [".safetensors", ".pt", ".bin"] where name.hasSuffix(ext) { name = String(name.dropLast(ext.count)) }
            guard let embedding = library.embeddings[name] else {
                if let problem = library.unreadable[name] { throw PromptError(message: problem) }
                let known = library.embeddings.keys.sorted()
                throw PromptError(message: "the prompt uses embedding:\(name), but " + (library.isEmpty
                    ? "no embeddings folder is given (--embeddings DIR or clip_encode's embeddings)"
                    : "the embeddings folder has no '\(name)' (it has: \(known.prefix(10).joined(separator: ", ")))"))
            }
            segments.append(.text(ns.substring(with: NSRange(location: start, length: match.range.location - start))))
            segments.append(.embedding(embedding))
            start = match.range.location + match.range.length
        }
        segments.append(.text(ns.substring(from: start)))
        return segments
    }
}

/// A prompt that cannot be encoded, with the reason.
public struct PromptError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension CLIPTextEncoder {
    /// The conditioning of a chunked prompt: the chunks are encoded together, weighted by
    /// `weighting`, and joined along the token axis: (1, 77 x chunks, C).
    /// - a1111: hidden states x weight, then scaled back to the chunk's original mean;
    /// - comfy: z_empty + (z - z_empty) x weight, z_empty being the encoding of `emptyIDs`
    ///   (the empty prompt) at the same positions;
    /// - none: the weights are ignored.
    /// `finalNorm: false` takes the layer's output without the final layer norm (SDXL).
    public func encode(_ prompt: PromptChunks, weighting: PromptWeighting, emptyIDs: [Int], skippedLayers: Int = 0,
                       finalNorm: Bool = true) -> Tensor {
        let rows = Self.rows(prompt, weighting: weighting, emptyIDs: emptyIDs)
        return Self.weighted(encode(rows, vectors: prompt.vectors, skippedLayers: skippedLayers, finalNorm: finalNorm), prompt, weighting: weighting)
    }

    /// The rows to encode for `prompt`: its chunks, and the empty prompt after them when ComfyUI's
    /// weighting needs its encoding.
    static func rows(_ prompt: PromptChunks, weighting: PromptWeighting, emptyIDs: [Int]) -> [[Int]] {
        prompt.ids + (weighting == .comfy && prompt.isWeighted ? [emptyIDs] : [])
    }

    /// The encoded `rows(prompt, ...)` (rows, 77, C), weighted and joined: (1, 77 x chunks, C).
    static func weighted(_ z: Tensor, _ prompt: PromptChunks, weighting: PromptWeighting) -> Tensor {
        let weighted = weighting != .none && prompt.isWeighted
        let (t, c) = (z.shape[1], z.shape[2])
        let chunkCount = prompt.ids.count
        var out = Tensor(uninitialized: [1, chunkCount * t, c])
        let src = z.pointer, dst = out.mutablePointer()
        for k in 0..<chunkCount {
            let chunk = src + k * t * c, target = dst + k * t * c
            let w = prompt.weights[k]
            switch (weighted, weighting) {
            case (true, .a1111):
                var before = 0.0, after = 0.0
                for i in 0..<t {
                    for j in 0..<c {
                        let v = chunk[i * c + j]
                        before += Double(v)
                        target[i * c + j] = v * w[i]
                        after += Double(target[i * c + j])
                    }
                }
                let rescale = Float(before / Double(t * c)) / Float(after / Double(t * c))
                for i in 0..<(t * c) { target[i] *= rescale }
            case (true, .comfy):
                let empty = src + chunkCount * t * c
                for i in 0..<t {
                    for j in 0..<c {
                        let v = chunk[i * c + j], e = empty[i * c + j]
                        target[i * c + j] = w[i] == 1 ? v : e + (v - e) * w[i]
                    }
                }
            default:
                target.update(from: chunk, count: t * c)
            }
        }
        return out
    }
}

/// SDXL's two text encoders (CLIP ViT-L and OpenCLIP ViT-bigG with its projection) as one prompt encoder.
public struct SDXLTextEncoders: Sendable {
    public let first: CLIPTextEncoder
    public let second: CLIPTextEncoder

    public init(first: CLIPTextEncoder, second: CLIPTextEncoder) {
        (self.first, self.second) = (first, second)
    }

    /// The second encoder's ids: the padding after each row's first end token is "!" (id 0), as
    /// OpenCLIP's tokenizer pads.
    static func secondIDs(_ rows: [[Int]], endID: Int) -> [[Int]] {
        rows.map { row in
            guard let end = row.firstIndex(of: endID) else { return row }
            return Array(row[...end]) + Array(repeating: 0, count: row.count - end - 1)
        }
    }

    /// A chunked prompt's conditioning: each encoder's penultimate hidden states (without the final
    /// norm, as diffusers and ComfyUI take them), weighted as SD 1.x's, side by side
    /// (1, 77 x chunks, C1 + C2); and the second encoder's pooled, projected output of the first
    /// chunk (1, P).
    public func encode(_ prompt: PromptChunks, weighting: PromptWeighting, emptyIDs: [Int]) -> (context: Tensor, pooled: Tensor) {
        let a = first.encode(prompt, weighting: weighting, emptyIDs: emptyIDs, skippedLayers: 1, finalNorm: false)
        // One pass of the second encoder gives both its penultimate states and, from the last, the pooled text.
        let rows = Self.secondIDs(CLIPTextEncoder.rows(prompt, weighting: weighting, emptyIDs: emptyIDs), endID: second.config.endTokenID)
        let states = second.hiddenStates(rows, vectors: prompt.vectors)  // layers + 1 of (rows, 77, C2)
        let b = CLIPTextEncoder.weighted(states[states.count - 2], prompt, weighting: weighting)
        let pooled = second.pooled([rows[0]], lastHidden: states[states.count - 1].slice(0..<1))
        return (Tensor.concatenate([a, b], axis: 2), pooled)
    }
}
