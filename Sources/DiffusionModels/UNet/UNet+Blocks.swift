import TensorCore

// MARK: - ResBlock

/// LDM's `ResBlock`: GroupNorm-SiLU-conv, plus the projected timestep embedding per channel,
/// GroupNorm-SiLU-conv, plus the input (through a 1x1 conv when the width changes).
/// Parameter names: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection.
struct ResBlock: Sendable {
    let norm1: GroupNorm, conv1: Conv2d
    let embedding: Linear
    let norm2: GroupNorm, conv2: Conv2d
    let skip: Conv2d?

    init(_ p: ParameterScope, inputs: Int, outputs: Int, embedding width: Int, groups: Int, epsilon: Float) throws {
        norm1 = try GroupNorm(p["in_layers"][0], channels: inputs, groups: groups, epsilon: epsilon)
        conv1 = try .same3x3(p["in_layers"][2], inputs: inputs, outputs: outputs)
        embedding = try Linear(p["emb_layers"][1], inputs: width, outputs: outputs)
        norm2 = try GroupNorm(p["out_layers"][0], channels: outputs, groups: groups, epsilon: epsilon)
        conv2 = try .same3x3(p["out_layers"][3], inputs: outputs, outputs: outputs)
        skip = inputs == outputs ? nil : try Conv2d(p["skip_connection"], inputs: inputs, outputs: outputs, kernel: 1)
    }

    /// x (N, In, H, W), activatedEmbedding = SiLU(time embedding) (N, E) -> (N, Out, H, W)
    func callAsFunction(_ x: Tensor, activatedEmbedding: Tensor) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        h = h.addingChannelBias(embedding(activatedEmbedding))
        h = conv2(norm2(h, silu: true))
        h += skip?(x) ?? x
        return h
    }
}

// MARK: - Spatial transformer

/// Multi-head attention with bias-free q/k/v projections and a biased output projection
/// (`to_q`, `to_k`, `to_v`, `to_out.0`). Self-attention when no context is given.
struct CrossAttention: Sendable {
    let query: Linear, key: Linear, value: Linear, output: Linear
    let heads: Int

    init(_ p: ParameterScope, width: Int, contextWidth: Int, heads: Int) throws {
        query = try Linear(p["to_q"], inputs: width, outputs: width, bias: false)
        key = try Linear(p["to_k"], inputs: contextWidth, outputs: width, bias: false)
        value = try Linear(p["to_v"], inputs: contextWidth, outputs: width, bias: false)
        output = try Linear(p["to_out"][0], inputs: width, outputs: width)
        self.heads = heads
    }

    /// x (N, T, C), context (N, S, D) or nil for self-attention -> (N, T, C)
    func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let source = context ?? x
        let attended = Tensor.attention(query: query(x), key: key(source), value: value(source), heads: heads)
        return output(attended)
    }
}

/// LDM's `BasicTransformerBlock`: pre-norm self-attention, cross-attention to the text, and a
/// GEGLU feed-forward of 4x width, each with a residual connection.
struct TransformerBlock: Sendable {
    let norm1: LayerNorm, selfAttention: CrossAttention
    let norm2: LayerNorm, crossAttention: CrossAttention
    let norm3: LayerNorm, feedForwardIn: Linear, feedForwardOut: Linear

    init(_ p: ParameterScope, width: Int, contextWidth: Int, heads: Int) throws {
        norm1 = try LayerNorm(p["norm1"], width: width)
        selfAttention = try CrossAttention(p["attn1"], width: width, contextWidth: width, heads: heads)
        norm2 = try LayerNorm(p["norm2"], width: width)
        crossAttention = try CrossAttention(p["attn2"], width: width, contextWidth: contextWidth, heads: heads)
        norm3 = try LayerNorm(p["norm3"], width: width)
        let inner = 4 * width
        feedForwardIn = try Linear(p["ff"]["net"][0]["proj"], inputs: width, outputs: 2 * inner)
        feedForwardOut = try Linear(p["ff"]["net"][2], inputs: inner, outputs: width)
    }

    /// x (N, T, C), context (N, S, D) -> (N, T, C)
    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = x
        h += selfAttention(norm1(h))
        h += crossAttention(norm2(h), context: context)
        h += feedForwardOut(feedForwardIn(norm3(h)).geglu())  // (N, T, 8C) -> (N, T, 4C) -> (N, T, C)
        return h
    }
}

/// LDM's `SpatialTransformer`: GroupNorm, project in, transformer blocks over the H*W tokens,
/// project out, plus the input.
struct SpatialTransformer: Sendable {
    let norm: GroupNorm
    let projectIn: Projection, projectOut: Projection
    let blocks: [TransformerBlock]

    /// 1x1 convolution (SD 1.x) or linear layer (SD 2.x) projection.
    enum Projection: Sendable {
        case convolution(Conv2d)
        case linear(Linear)

        init(_ p: ParameterScope, width: Int, linear: Bool) throws {
            self = linear ? .linear(try Linear(p, inputs: width, outputs: width))
                          : .convolution(try Conv2d(p, inputs: width, outputs: width, kernel: 1))
        }
    }

    init(_ p: ParameterScope, width: Int, contextWidth: Int, heads: Int, depth: Int, groups: Int, linearProjection: Bool) throws {
        norm = try GroupNorm(p["norm"], channels: width, groups: groups, epsilon: 1e-6)
        projectIn = try Projection(p["proj_in"], width: width, linear: linearProjection)
        blocks = try (0..<depth).map { try TransformerBlock(p["transformer_blocks"][$0], width: width, contextWidth: contextWidth, heads: heads) }
        projectOut = try Projection(p["proj_out"], width: width, linear: linearProjection)
    }

    /// x (N, C, H, W), context (N, S, D) -> (N, C, H, W)
    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var tokens: Tensor
        switch projectIn {
        case .convolution(let conv):
            tokens = conv(norm(x)).reshaped([n, c, h * w]).transposedLastTwo()  // (N, C, HW) -> (N, HW, C)
        case .linear(let linear):
            tokens = linear(norm(x).reshaped([n, c, h * w]).transposedLastTwo())
        }
        for block in blocks { tokens = block(tokens, context: context) }
        var out: Tensor
        switch projectOut {
        case .convolution(let conv):
            out = conv(tokens.transposedLastTwo().reshaped([n, c, h, w]))  // (N, HW, C) -> (N, C, H, W)
        case .linear(let linear):
            out = linear(tokens).transposedLastTwo().reshaped([n, c, h, w])
        }
        out += x
        return out
    }
}
