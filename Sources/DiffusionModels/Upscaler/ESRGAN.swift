import TensorCore

/// ESRGAN's generator (RRDBNet), as BasicSR and Real-ESRGAN define it and users have it: ESRGAN,
/// RealESRGAN x4plus/x2plus, 4x-UltraSharp and most "4x-*" community upscalers.
///
/// conv_first, then `blocks` residual-in-residual dense blocks and conv_body (added back to the
/// features), then per 2x step a nearest upsampling and a convolution, then conv_hr and conv_last.
/// LeakyReLU(0.2) throughout. Real-ESRGAN's x2 and x1 models first fold 2x2 or 4x4 pixel blocks
/// into channels (pixel unshuffle), so their two upsamplings give 2x and 1x overall.
/// Parameters by BasicSR's names (`conv_first`, `body.N.rdb1.conv1`, ...); the original ESRGAN
/// names (`model.0`, `model.1.sub.N.RDB1.conv1.0`, ...) are renamed by `UpscalerFile`.
struct RRDBNet: Sendable {
    struct Config: Sendable, Equatable {
        var inChannels = 3, outChannels = 3, features = 64, blocks = 23, growth = 32
        /// 2x nearest-upsampling steps.
        var upsamplings = 2
        /// The pixel-unshuffle factor of the input (1, 2 or 4).
        var unshuffle = 1
        /// The output's size over the input's.
        var scale: Int { (1 << upsamplings) / unshuffle }
    }

    /// Five densely connected convolutions; their result, times 0.2, is added to the input.
    struct DenseBlock: Sendable {
        let convs: [Conv2d]

        init(_ p: ParameterScope, features: Int, growth: Int) throws {
            convs = try (0..<5).map { i in
                try Conv2d.same3x3(p["conv\(i + 1)"], inputs: features + i * growth, outputs: i == 4 ? features : growth)
            }
        }

        func callAsFunction(_ x: Tensor) -> Tensor {
            var features = [x]
            for conv in convs.dropLast() {
                features.append(leakyReLU(conv(Tensor.concatenate(features, axis: 1))))  // (N, F + k G, H, W) -> (N, G, H, W)
            }
            return convs[4](Tensor.concatenate(features, axis: 1)).scaled(by: 0.2) + x
        }
    }

    let config: Config
    let first: Conv2d
    let blocks: [[DenseBlock]]
    let body: Conv2d
    let upsamplers: [Conv2d]
    let hr: Conv2d
    let last: Conv2d

    init(config c: Config, parameters p: ParameterScope) throws {
        config = c
        let f = c.features
        first = try .same3x3(p["conv_first"], inputs: c.inChannels * c.unshuffle * c.unshuffle, outputs: f)
        blocks = try (0..<c.blocks).map { b in
            try (1...3).map { try DenseBlock(p["body"][b]["rdb\($0)"], features: f, growth: c.growth) }
        }
        body = try .same3x3(p["conv_body"], inputs: f, outputs: f)
        upsamplers = try (0..<c.upsamplings).map { try .same3x3(p["conv_up\($0 + 1)"], inputs: f, outputs: f) }
        hr = try .same3x3(p["conv_hr"], inputs: f, outputs: f)
        last = try .same3x3(p["conv_last"], inputs: f, outputs: c.outChannels)
    }

    /// (N, C, H, W) -> (N, C', H scale, W scale).
    func callAsFunction(_ x: Tensor) -> Tensor {
        let input = config.unshuffle > 1 ? x.pixelUnshuffled(config.unshuffle) : x  // (N, C u², H/u, W/u)
        let features = first(input)  // (N, F, h, w)
        var trunk = features
        for rrdb in blocks {
            let inner = rrdb.reduce(trunk) { $1($0) }
            trunk = inner.scaled(by: 0.2) + trunk
        }
        var y = body(trunk, adding: features)
        for upsampler in upsamplers { y = leakyReLU(upsampler.upsampling(y)) }  // (N, F, 2h, 2w) per step
        return last(leakyReLU(hr(y)))
    }
}

/// SRVGGNetCompact (Real-ESRGAN's realesr-general-x4v3 and realesr-animevideov3): a plain stack of
/// 3x3 convolutions with per-channel PReLUs, a pixel shuffle to the output size, plus the input upsampled
/// by nearest. Parameters `body.0` (first convolution), `body.1` (its PReLU), ... as saved.
struct SRVGGNetCompact: Sendable {
    struct Config: Sendable, Equatable {
        var inChannels = 3, outChannels = 3, features = 64, convolutions = 16, scale = 4
    }

    let config: Config
    /// The first convolution, `convolutions` more, and the last (to outChannels x scale²).
    let convs: [Conv2d]
    /// Per-channel PReLU slopes after each convolution but the last.
    let slopes: [Tensor]

    init(config c: Config, parameters p: ParameterScope) throws {
        config = c
        let count = c.convolutions + 2
        convs = try (0..<count).map { i in
            try Conv2d.same3x3(p["body"][2 * i], inputs: i == 0 ? c.inChannels : c.features,
                               outputs: i == count - 1 ? c.outChannels * c.scale * c.scale : c.features)
        }
        slopes = try (0..<(count - 1)).map { try p["body"][2 * $0 + 1].tensor("weight", shape: [c.features]) }
    }

    /// (N, C, H, W) -> (N, C', H scale, W scale).
    func callAsFunction(_ x: Tensor) -> Tensor {
        var y = x
        for (i, conv) in convs.enumerated() {
            y = conv(y)
            if i < slopes.count { y = y.preluPerChannel(slopes[i]) }
        }
        var out = y.pixelShuffled(config.scale)  // (N, C', H s, W s)
        out += x.resizedNearest(height: x.shape[2] * config.scale, width: x.shape[3] * config.scale)
        return out
    }
}

/// LeakyReLU with slope 0.2 (ESRGAN's activation).
func leakyReLU(_ x: Tensor) -> Tensor { x.map { $0 >= 0 ? $0 : 0.2 * $0 } }

extension Tensor {
    /// PReLU with one slope per channel: (N, C, H, W), slopes (C).
    func preluPerChannel(_ slopes: Tensor) -> Tensor {
        precondition(rank == 4 && slopes.count == shape[1], "PReLU: \(slopes.count) slopes for \(shape)")
        var result = self.copied()
        let (planes, channels, area) = (shape[0] * shape[1], shape[1], shape[2] * shape[3])
        let p = result.mutablePointer(), a = slopes.pointer
        Parallel.forEach(planes, minimumPerThread: 1) { plane in
            let slope = a[plane % channels], row = p + plane * area
            for i in 0..<area where row[i] < 0 { row[i] *= slope }
        }
        return result
    }
}
