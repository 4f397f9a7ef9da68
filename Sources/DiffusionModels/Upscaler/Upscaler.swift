import Foundation
import SafeTensors
import TensorCore

/// An image upscaler model of the ESRGAN family, loaded from the file users have (`.pth` read by the
/// restricted unpickler, or `.safetensors`). The architecture and its sizes, the scale included,
/// are read from the weights' names and shapes, as spandrel does:
///
/// - RRDBNet with BasicSR/Real-ESRGAN names (`conv_first`, `body.N.rdb1.conv1`, `conv_up1`, ...);
///   the scale is 2^(upsampling convolutions) over the pixel-unshuffle that `conv_first`'s input
///   channels show (3: none, 12: 2, 48: 4);
/// - RRDBNet with the original ESRGAN names (`model.0`, `model.1.sub.N.RDB1.conv1.0`, ..., the
///   upsampling convolutions at `model.3`, `model.6`, ...), renamed to the first;
/// - RRDBNet with BSRGAN/RealSR names (`RRDB_trunk.N.RDB1.conv1`, `trunk_conv`, `upconv1`, `HRconv`);
/// - SRVGGNetCompact with PReLU (`body.0`, `body.1`, ...); the scale from the last convolution's
///   outputs (channels x scale²).
///
/// Wrappers are undone first: `params_ema`/`params` (by the unpickler) and a `module.` prefix.
public struct Upscaler: Sendable {
    enum Network: Sendable {
        case rrdb(RRDBNet)
        case srvgg(SRVGGNetCompact)
    }

    public let path: String
    /// Output pixels per input pixel along each side.
    public let scale: Int
    /// The architecture and its sizes, for messages and `explain` ("RRDBNet (ESRGAN): 23 blocks, 64 features, 4x").
    public let summary: String
    let network: Network

    public init(path: String) throws {
        self.path = path
        let file = try SafeTensorsFile.weights(path: path)
        var names = file.names
        let prefix = !names.isEmpty && names.allSatisfy({ $0.hasPrefix("module.") }) ? "module." : ""
        names = names.map { String($0.dropFirst(prefix.count)) }
        func shape(_ name: String) -> [Int]? { file.entries[prefix + name]?.shape }
        func unknown(_ why: String) -> CheckpointError {
            .unsupportedModel(path: path, reason: why + "; sdflow's upscalers are ESRGAN/Real-ESRGAN (RRDBNet) and SRVGGNetCompact "
                              + "(tensors: " + names.prefix(6).joined(separator: ", ") + (names.count > 6 ? ", ..." : "") + ")")
        }

        var locations: [String: ParameterStore.Location] = [:]
        if names.contains("body.0.rdb1.conv1.weight") || names.contains("RRDB_trunk.0.RDB1.conv1.weight") || names.contains("model.0.weight") {
            let renamed = names.contains("body.0.rdb1.conv1.weight") ? Dictionary(uniqueKeysWithValues: names.map { ($0, $0) })
                                                                     : try Upscaler.basicSRNames(names, path: path)
            for (new, old) in renamed { locations[new] = .init(file: file, key: prefix + old) }
            let store = ParameterStore(component: "upscaler", locations: locations)
            var c = RRDBNet.Config()
            guard let firstShape = store.shape("conv_first.weight"), firstShape.count == 4,
                  let lastShape = store.shape("conv_last.weight"), lastShape.count == 4 else {
                throw unknown("an RRDBNet without conv_first/conv_last convolutions")
            }
            if names.contains(where: { $0.contains("conv1x1") }) { throw unknown("ESRGAN+ ('plus', 1x1 convolutions in the dense blocks) is not supported") }
            c.features = firstShape[0]
            c.outChannels = lastShape[0]
            switch firstShape[1] {
            case c.outChannels: c.unshuffle = 1
            case 4 * c.outChannels: c.unshuffle = 2
            case 16 * c.outChannels: c.unshuffle = 4
            default: throw unknown("conv_first reads \(firstShape[1]) channels for a \(c.outChannels)-channel output")
            }
            c.inChannels = firstShape[1] / (c.unshuffle * c.unshuffle)
            c.blocks = 0
            while store.contains("body.\(c.blocks).rdb1.conv1.weight") { c.blocks += 1 }
            c.growth = store.shape("body.0.rdb1.conv1.weight")?.first ?? 32
            c.upsamplings = 0
            while store.contains("conv_up\(c.upsamplings + 1).weight") { c.upsamplings += 1 }
            guard c.blocks > 0, c.scale >= 1, (1 << c.upsamplings) % c.unshuffle == 0 else { throw unknown("an RRDBNet of no recognisable size") }
            network = .rrdb(try RRDBNet(config: c, parameters: store.scope("")))
            try store.checkAllUsed()
            scale = c.scale
            summary = "RRDBNet (ESRGAN): \(c.blocks) blocks, \(c.features) features, \(c.scale)x"
        } else if let firstShape = shape("body.0.weight"), firstShape.count == 4 {
            for name in names { locations[name] = .init(file: file, key: prefix + name) }
            let store = ParameterStore(component: "upscaler", locations: locations)
            var c = SRVGGNetCompact.Config()
            c.inChannels = firstShape[1]
            c.features = firstShape[0]
            var convs = 0
            while store.shape("body.\(2 * convs).weight")?.count == 4 { convs += 1 }
            guard convs >= 2, let lastShape = store.shape("body.\(2 * (convs - 1)).weight") else { throw unknown("an SRVGGNetCompact without its last convolution") }
            c.convolutions = convs - 2
            c.outChannels = c.inChannels
            let square = lastShape[0] / c.outChannels
            c.scale = Int(Double(square).squareRoot().rounded())
            guard c.scale >= 1, c.scale * c.scale * c.outChannels == lastShape[0] else {
                throw unknown("the last convolution's \(lastShape[0]) outputs are not \(c.outChannels) channels x scale²")
            }
            guard store.contains("body.1.weight") else {
                throw unknown("an SRVGGNetCompact without PReLU weights (its ReLU or LeakyReLU cannot be told from the weights)")
            }
            network = .srvgg(try SRVGGNetCompact(config: c, parameters: store.scope("")))
            try store.checkAllUsed()
            scale = c.scale
            summary = "SRVGGNetCompact: \(c.convolutions) convolutions, \(c.features) features, \(c.scale)x"
        } else {
            throw unknown("not an upscaler sdflow recognises")
        }
    }

    /// BasicSR names for the other RRDBNet layouts (new name -> stored name).
    ///
    /// - BSRGAN / RealSR / the later ESRGAN repository: `RRDB_trunk.N.RDBk.convj`, `trunk_conv`,
    ///   `upconvU`, `HRconv` (conv_first and conv_last as BasicSR's).
    /// - The original ESRGAN: model.0 is conv_first, model.1.sub.N.RDBk.convj.0 the dense blocks,
    ///   model.1.sub.<blocks> conv_body, then per 2x step an upsampling convolution every 3 indices
    ///   (model.3, model.6, ...), then conv_hr and conv_last 2 apart.
    static func basicSRNames(_ names: [String], path: String) throws -> [String: String] {
        var result: [String: String] = [:]
        if names.contains(where: { $0.hasPrefix("RRDB_trunk.") }) {
            for name in names {
                var new = name
                for (old, replacement) in [("RRDB_trunk.", "body."), ("trunk_conv.", "conv_body."), ("upconv", "conv_up"), ("HRconv.", "conv_hr.")]
                    where new.hasPrefix(old) { new = replacement + new.dropFirst(old.count) }
                new = new.replacingOccurrences(of: ".RDB", with: ".rdb")
                result[new] = name
            }
            return result
        }
        var top: [Int] = []
        var blocks = 0
        for name in names {
            let parts = name.split(separator: ".")
            guard parts.count >= 3, parts[0] == "model", let index = Int(parts[1]) else { continue }
            if index == 1, parts.count == 8, parts[2] == "sub", let block = Int(parts[3]), parts[4].hasPrefix("RDB"), parts[6] == "0" {
                result["body.\(block).\(parts[4].lowercased()).\(parts[5]).\(parts[7])"] = name  // model.1.sub.N.RDB1.conv1.0.weight
                blocks = Swift.max(blocks, block + 1)
            } else if index != 1, parts.count == 3 {
                top.append(index)
            }
        }
        for leaf in ["weight", "bias"] where names.contains("model.1.sub.\(blocks).\(leaf)") {
            result["conv_body.\(leaf)"] = "model.1.sub.\(blocks).\(leaf)"
        }
        // Convolutions at 0, 3, 6, ..., 3U, 3U + 2, 3U + 4 for U 2x steps (an x3 file, with one 3x step, has other places).
        let convs = Set(top).sorted()
        let steps = convs.count - 3
        let expected = [0] + (0..<Swift.max(steps, 0)).map { 3 * ($0 + 1) } + [3 * steps + 2, 3 * steps + 4]
        guard steps >= 0, convs == expected else {
            throw CheckpointError.unsupportedModel(path: path, reason: "an ESRGAN file whose model.N layers are not 2x upsampling steps "
                                                   + "(model.\(convs.map(String.init).joined(separator: ", model."))); x3 ESRGANs are not supported")
        }
        let renamed = ["conv_first"] + (0..<steps).map { "conv_up\($0 + 1)" } + ["conv_hr", "conv_last"]
        for (index, name) in zip(convs, renamed) {
            for leaf in ["weight", "bias"] where names.contains("model.\(index).\(leaf)") { result["\(name).\(leaf)"] = "model.\(index).\(leaf)" }
        }
        // Anything else under model. is left for checkAllUsed to name.
        for name in names where !result.values.contains(name) { result["unexpected." + name] = name }
        return result
    }

    /// The network alone: image samples (N, C, H, W) in [0, 1] -> (N, C, H scale, W scale), not clamped.
    /// A pixel-unshuffle RRDBNet needs H and W to be multiples of its unshuffle factor.
    public func network(_ x: Tensor) -> Tensor {
        switch network {
        case let .rrdb(model): return model(x)
        case let .srvgg(model): return model(x)
        }
    }

    /// The model applied as spandrel applies it: the input padded at the right and bottom to the
    /// model's size requirement (a multiple of 4, at least 4, for the pixel-unshuffle models;
    /// reflected, then repeated where reflection runs out), the output clamped to [0, 1] and cropped.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (h, w) = (x.shape[2], x.shape[3])
        let (minimum, multiple) = sizeRequirement
        func padded(_ n: Int) -> Int { (Swift.max(n, minimum) + multiple - 1) / multiple * multiple }
        let (ph, pw) = (padded(h), padded(w))
        var y = network(ph == h && pw == w ? x : x.paddedBottomRight(height: ph, width: pw))
        y.apply { Swift.min(Swift.max($0, 0), 1) }
        return ph == h && pw == w ? y : y.window(rows: 0..<(h * scale), columns: 0..<(w * scale))
    }

    /// spandrel's size requirement (minimum side, multiple): RRDBNet 2 (4 and multiples of 4 when it
    /// folds pixel blocks into channels, as Real-ESRGAN x2 and x1 do), SRVGGNetCompact none.
    var sizeRequirement: (minimum: Int, multiple: Int) {
        guard case let .rrdb(model) = network else { return (1, 1) }
        return model.config.unshuffle > 1 ? (4, 4) : (2, 1)
    }

    /// Upscales `x` (N, C, H, W) in tiles of at most `tileSize` input pixels overlapping by
    /// `overlap` (averaged with ramps over the overlaps, as ComfyUI's tiled upscale feathers them);
    /// whole when it fits one tile or `tileSize` is nil. Each tile is clamped to [0, 1], as each of
    /// ComfyUI's is.
    public func upscale(_ x: Tensor, tileSize: Int?, overlap: Int) -> Tensor {
        let (h, w) = (x.shape[2], x.shape[3])
        guard let tileSize, h > tileSize || w > tileSize else { return self(x) }
        let plan = TilePlan(height: h, width: w, tileSize: tileSize, overlap: Swift.min(overlap, tileSize - 1), layout: .fitted)
        return plan.averaged(x, scale: scale) { tile, _, _ in self(tile) }
    }
}

extension Tensor {
    /// (N, C, H, W) padded at the bottom and right to `height` x `width` as spandrel pads: reflected
    /// (without repeating the edge) as far as the image allows, then the last reflected line repeated.
    func paddedBottomRight(height: Int, width: Int) -> Tensor {
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        /// The source index of index i of an axis of `size` padded to `target`.
        func source(_ i: Int, _ size: Int, _ target: Int) -> Int {
            let reflected = Swift.min(target - size, size - 1)  // at most size - 1 lines can be reflected
            if i < size { return i }
            return i < size + reflected ? 2 * (size - 1) - i : size - 1 - reflected
        }
        let rows = (0..<height).map { source($0, h, height) }
        let columns = (0..<width).map { source($0, w, width) }
        var result = Tensor(uninitialized: [shape[0], shape[1], height, width])
        let src = pointer, dst = result.mutablePointer()
        Parallel.forEach(planes, minimumPerThread: 1) { plane in
            for (y, sy) in rows.enumerated() {
                let s = src + (plane * h + sy) * w, d = dst + (plane * height + y) * width
                for (x, sx) in columns.enumerated() { d[x] = s[sx] }
            }
        }
        return result
    }
}
