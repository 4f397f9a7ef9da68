import TensorCore

/// The CLIP text transformer of SD 1.x (transformers' `CLIPTextModel`; LDM's
/// `cond_stage_model.transformer`): token and position embeddings, pre-norm causal
/// self-attention layers with a quick-GELU (or GELU) MLP, and a final layer norm.
/// Parameters by their transformers names under `cond_stage_model.transformer.text_model.`.
public struct CLIPTextEncoder: Sendable {
    /// Hyperparameters of the text encoder.
    public struct Config: Sendable, Equatable {
        public var vocabularySize = 49408
        public var width = 768
        public var intermediateWidth = 3072
        public var heads = 12
        public var layers = 12
        public var maxPositions = 77
        /// quick-GELU for OpenAI CLIP (SD 1.x); exact GELU for some other encoders.
        public var quickGELU = true
        public var layerNormEpsilon: Float = 1e-5
        /// The width of the text projection of the pooled output (CLIPTextModelWithProjection,
        /// SDXL's second encoder); nil for none.
        public var projectionWidth: Int?
        /// The end-of-text token, whose position gives the pooled output.
        public var endTokenID = 49407

        public init() {}

        /// openai/clip-vit-large-patch14, SD 1.x's text encoder.
        public static let sd15 = Config()

        /// Reads a transformers `text_encoder/config.json` (CLIPTextConfig).
        public static func transformers(configPath path: String) throws -> Config {
            let json = try ConfigJSON(path: path)
            var c = Config()
            c.vocabularySize = try json.int("vocab_size", default: 49408)
            c.width = try json.int("hidden_size", default: 768)
            c.intermediateWidth = try json.int("intermediate_size", default: 3072)
            c.heads = try json.int("num_attention_heads", default: 12)
            c.layers = try json.int("num_hidden_layers", default: 12)
            c.maxPositions = try json.int("max_position_embeddings", default: 77)
            c.layerNormEpsilon = Float(try json.double("layer_norm_eps", default: 1e-5))
            c.endTokenID = try json.int("eos_token_id", default: 49407)
            switch json.string("hidden_act") ?? "quick_gelu" {
            case "quick_gelu": c.quickGELU = true
            case "gelu": c.quickGELU = false
            case let other: throw CheckpointError.unsupportedModel(path: path, reason: "text encoder activation '\(other)'")
            }
            guard c.width % c.heads == 0 else {
                throw CheckpointError.invalidConfig(path: path, reason: "hidden_size \(c.width) not divisible by \(c.heads) heads")
            }
            return c
        }
    }

    /// One pre-norm transformer layer.
    struct Layer: Sendable {
        let norm1: LayerNorm, query: Linear, key: Linear, value: Linear, output: Linear
        let norm2: LayerNorm, fc1: Linear, fc2: Linear
    }

    public let config: Config
    let tokenEmbedding: Weight      // (vocab, C); only the rows of a prompt's tokens are read
    let positionEmbedding: Tensor   // (77, C)
    let layers: [Layer]
    let finalNorm: LayerNorm
    /// `text_projection` (no bias), for the pooled output.
    let projection: Linear?

    /// Builds the encoder from `parameters` scoped at `text_model`; `projection` is the scope of
    /// `text_projection` when the config has one.
    public init(config c: Config, parameters p: ParameterScope, projection q: ParameterScope? = nil) throws {
        config = c
        tokenEmbedding = try p["embeddings"]["token_embedding"].weight("weight", shape: [c.vocabularySize, c.width])
        positionEmbedding = try p["embeddings"]["position_embedding"].tensor("weight", shape: [c.maxPositions, c.width])
        layers = try (0..<c.layers).map { i in
            let q = p["encoder"]["layers"][i]
            let attention = q["self_attn"]
            return Layer(norm1: try LayerNorm(q["layer_norm1"], width: c.width, epsilon: c.layerNormEpsilon),
                         query: try Linear(attention["q_proj"], inputs: c.width, outputs: c.width),
                         key: try Linear(attention["k_proj"], inputs: c.width, outputs: c.width),
                         value: try Linear(attention["v_proj"], inputs: c.width, outputs: c.width),
                         output: try Linear(attention["out_proj"], inputs: c.width, outputs: c.width),
                         norm2: try LayerNorm(q["layer_norm2"], width: c.width, epsilon: c.layerNormEpsilon),
                         fc1: try Linear(q["mlp"]["fc1"], inputs: c.width, outputs: c.intermediateWidth),
                         fc2: try Linear(q["mlp"]["fc2"], inputs: c.intermediateWidth, outputs: c.width))
        }
        finalNorm = try LayerNorm(p["final_layer_norm"], width: c.width, epsilon: c.layerNormEpsilon)
        projection = try c.projectionWidth.map { width in
            guard let q else { throw CheckpointError.invalidConfig(path: p.store.component, reason: "a text projection without its weights") }
            return try Linear(q, inputs: c.width, outputs: width, bias: false)
        }
    }

    /// The hidden states after the embeddings and after every layer (layers + 1 tensors of
    /// (N, T, C)), as transformers' `hidden_states`, without the final layer norm.
    /// Ids from `PromptChunks.embeddingBase` on stand for the rows of `vectors` (textual inversion),
    /// which replace the token embedding at their position.
    public func hiddenStates(_ ids: [[Int]], vectors: [[Float]] = [], stoppingAfter lastLayer: Int? = nil) -> [Tensor] {
        let n = ids.count, t = ids.first?.count ?? 0, c = config.width
        precondition(t <= config.maxPositions && ids.allSatisfy { $0.count == t },
                     "text encoder: token sequences must have equal length <= \(config.maxPositions)")
        var x = Tensor(uninitialized: [n, t, c])
        let dst = x.mutablePointer()
        for (b, row) in ids.enumerated() {
            for (i, id) in row.enumerated() {
                let out = dst + (b * t + i) * c, position = positionEmbedding.pointer + i * c
                if id >= PromptChunks.embeddingBase {
                    let vector = vectors[id - PromptChunks.embeddingBase]
                    precondition(vector.count == c, "an embedding of width \(vector.count) for a \(c)-wide text encoder")
                    for j in 0..<c { out[j] = vector[j] + position[j] }
                } else {
                    precondition(id >= 0 && id < config.vocabularySize, "token id \(id) outside the vocabulary of \(config.vocabularySize)")
                    tokenEmbedding.rows(id..<(id + 1)).withUnsafeBufferPointer { token in
                        for j in 0..<c { out[j] = token[j] + position[j] }
                    }
                }
            }
        }
        var states = [x]
        for layer in layers.prefix(lastLayer ?? layers.count) {
            var h = x
            let normed = layer.norm1(h)
            let attended = Tensor.attention(query: layer.query(normed), key: layer.key(normed), value: layer.value(normed),
                                            heads: config.heads, causal: true)
            h += layer.output(attended)
            let hidden = layer.fc1(layer.norm2(h))  // (N, T, C) -> (N, T, 4C)
            h += layer.fc2(config.quickGELU ? hidden.quickGELU() : hidden.gelu())
            x = h
            states.append(x)
        }
        return states
    }

    /// The pooled output (transformers' `text_embeds` of CLIPTextModelWithProjection): the last
    /// hidden state with the final layer norm at each sequence's first end-of-text token, through
    /// the text projection. `lastHidden` (N, T, C) from `hiddenStates(ids).last`. -> (N, projection)
    public func pooled(_ ids: [[Int]], lastHidden: Tensor) -> Tensor {
        let (n, t, c) = (lastHidden.shape[0], lastHidden.shape[1], lastHidden.shape[2])
        let normed = finalNorm(lastHidden)
        var rows = Tensor(uninitialized: [n, c])
        let out = rows.mutablePointer()
        normed.withUnsafeBufferPointer { h in
            for (b, row) in ids.enumerated() {
                let position = row.firstIndex(of: config.endTokenID) ?? t - 1
                for j in 0..<c { out[b * c + j] = h[(b * t + position) * c + j] }
            }
        }
        return projection.map { $0(rows) } ?? rows
    }

    /// The conditioning for the UNet: the output of layer `layers - skippedLayers`, with the
    /// final layer norm applied (skippedLayers 0 is `last_hidden_state`; 1 is "clip skip 2"
    /// in A1111/ComfyUI terms and diffusers' `clip_skip=1`). ids (N, T) -> (N, T, C)
    /// `finalNorm: false` gives the layer's output as it is (SDXL's penultimate hidden states).
    public func encode(_ ids: [[Int]], vectors: [[Float]] = [], skippedLayers: Int = 0, finalNorm normed: Bool = true) -> Tensor {
        precondition(skippedLayers >= 0 && skippedLayers < config.layers, "cannot skip \(skippedLayers) of \(config.layers) layers")
        let states = hiddenStates(ids, vectors: vectors, stoppingAfter: config.layers - skippedLayers)
        return normed ? finalNorm(states[states.count - 1]) : states[states.count - 1]
    }
}
