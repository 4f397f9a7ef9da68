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
    public func chunks(_ prompt: String, weighting: PromptWeighting) -> PromptChunks {
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
        for piece in PromptParser.parse(prompt, style: weighting) {
            if piece.isBreak {
                closeChunk()
                continue
            }
            for token in self.tokens(piece.text) {
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
                tokens.append(token)
                weights.append(Float(piece.weight))
            }
        }
        if !tokens.isEmpty || result.ids.isEmpty { closeChunk() }
        return result
    }
}

extension CLIPTextEncoder {
    /// The conditioning of a chunked prompt: the chunks are encoded together, weighted by
    /// `weighting`, and joined along the token axis: (1, 77 x chunks, C).
    /// - a1111: hidden states x weight, then scaled back to the chunk's original mean;
    /// - comfy: z_empty + (z - z_empty) x weight, z_empty being the encoding of `emptyIDs`
    ///   (the empty prompt) at the same positions;
    /// - none: the weights are ignored.
    public func encode(_ prompt: PromptChunks, weighting: PromptWeighting, emptyIDs: [Int], skippedLayers: Int = 0) -> Tensor {
        let weighted = weighting != .none && prompt.isWeighted
        let rows = prompt.ids + (weighted && weighting == .comfy ? [emptyIDs] : [])
        let z = encode(rows, skippedLayers: skippedLayers)  // (rows, 77, C)
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
