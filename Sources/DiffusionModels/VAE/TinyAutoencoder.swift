import Foundation
import SafeTensors
import TensorCore

/// What the pipeline needs of an autoencoder: the full KL VAE or TAESD.
public protocol LatentAutoencoder: Sendable {
    /// Image (N, 3, H, W) in [-1, 1] -> scaled latents (N, 4, H/8, W/8); `noise` draws a posterior
    /// sample where the model has a posterior (the KL VAE), and is ignored otherwise. With
    /// `tiling`, an image larger than one tile is encoded tile by tile.
    func encode(_ image: Tensor, noise: Tensor?, tiling: VAETiling?) -> Tensor
    /// Scaled latents (N, 4, h, w) -> image (N, 3, 8h, 8w), nominally in [-1, 1]; with `tiling`,
    /// latents larger than one tile are decoded tile by tile.
    func decode(_ latents: Tensor, tiling: VAETiling?) -> Tensor
    /// Channels of the latents.
    var latentChannels: Int { get }
    /// Pixels per latent cell along each side.
    var downsamplingFactor: Int { get }
    /// About the memory an untiled encode or decode of a `pixels`-pixel image takes, in bytes.
    func untiledBytes(pixels: Int) -> Int
}

extension AutoencoderKL: LatentAutoencoder {
    public var latentChannels: Int { config.latentChannels }
    public var downsamplingFactor: Int { config.downscale }
    /// Measured with SD 1.5's VAE (128 channels at full size), release build, peak resident memory
    /// above the weights: 1.0 GB at 512x512, 3.7 GB at 1024x1024, about 30 bytes per pixel and
    /// first-level channel.
    public func untiledBytes(pixels: Int) -> Int { pixels * config.baseChannels * 30 }
}

/// TAESD (Ollin Boer Bohan's tiny autoencoder; diffusers' `AutoencoderTiny`): 3x3 convolutions of
/// 64 channels with ReLU, no normalisation, attention or posterior, trained to reproduce SD's
/// scaled latents and decoded images. About 20x less work than the KL VAE.
///
/// Reads the diffusers layout (a folder with config.json and
/// `diffusion_pytorch_model[.fp16].safetensors`: `encoder.layers.N...`, `decoder.layers.N...`) and
/// the original one that A1111 and ComfyUI use (`taesd_encoder.safetensors` and
/// `taesd_decoder.safetensors`, keys `N...` with the decoder's index shifted by its leading clamp).
/// The layer structure (levels and blocks per level) follows from the tensor names.
public struct TinyAutoencoder: LatentAutoencoder {
    /// One layer of the encoder's or decoder's sequence.
    enum Layer: Sendable {
        case conv(Conv2d), block(TinyBlock), relu, upsample
    }

    let encoderLayers: [Layer]?
    let decoderLayers: [Layer]?
    /// diffusers' `scaling_factor` (1 for TAESD: its latents are SD's scaled latents).
    public let scalingFactor: Float
    public let latentChannels: Int
    /// 2 to the number of stride-2 convolutions (upsamplings in the decoder): 8 for TAESD.
    public let downsamplingFactor: Int
    /// Where the weights came from, for messages.
    public let path: String

    public var canEncode: Bool { encoderLayers != nil }
    /// 64 channels at full size, no attention: a few full-size activations (an estimate).
    public func untiledBytes(pixels: Int) -> Int { pixels * 64 * 4 * 4 }
    public var canDecode: Bool { decoderLayers != nil }

    /// Whether `path` holds TAESD rather than a full VAE: a folder whose config.json names an
    /// AutoencoderTiny or that holds taesd_*.safetensors, or a file whose tensors are named by layer
    /// index ("1.conv.0.weight") as the original TAESD files are.
    public static func recognises(_ path: String) -> Bool {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return false }
        if isFolder.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            if names.contains(where: { $0.hasPrefix("taesd_") }) { return true }
            let config = FileManager.default.contents(atPath: path + "/config.json")
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            return config?["_class_name"] as? String == "AutoencoderTiny"
        }
        // TAESD's files are a few megabytes; a full VAE (80-335 MB) is not opened twice to tell.
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size < 64 << 20, let file = try? SafeTensorsFile.weights(path: path) else { return false }
        return !file.names.isEmpty && file.names.allSatisfy { $0.first?.isNumber == true }
    }

    /// Loads TAESD from a diffusers folder, a folder holding `taesd_encoder.safetensors` and/or
    /// `taesd_decoder.safetensors`, or one of those files (its sibling is loaded too when present).
    public init(path: String) throws {
        func fail(_ message: String) -> CheckpointError { CheckpointError.invalidConfig(path: path, reason: "TAESD: " + message) }
        self.path = path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw fail("no such file or folder") }
        var locations: [String: ParameterStore.Location] = [:]
        var scaling: Float = 1
        let folder = isFolder.boolValue ? path : URL(fileURLWithPath: path).deletingLastPathComponent().path
        let diffusersWeights = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"]
            .map { folder + "/" + $0 }.first { FileManager.default.fileExists(atPath: $0) }
        if isFolder.boolValue, let weights = diffusersWeights {
            let file = try SafeTensorsFile(path: weights)
            for name in file.names { locations[name] = .init(file: file, key: name) }
            if let data = FileManager.default.contents(atPath: folder + "/config.json"),
               let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                guard (config["_class_name"] as? String).map({ $0 == "AutoencoderTiny" }) ?? true else {
                    throw fail("config.json describes a \(config["_class_name"]!), not an AutoencoderTiny")
                }
                if let s = config["scaling_factor"] as? Double { scaling = Float(s) }
            }
        } else {
            // The original files: given one, or found in the folder.
            var files: [String] = isFolder.boolValue ? [] : [path]
            for name in ["taesd_encoder.safetensors", "taesd_decoder.safetensors"] where !files.contains(where: { $0.hasSuffix("/" + name) || $0 == name }) {
                if FileManager.default.fileExists(atPath: folder + "/" + name) { files.append(folder + "/" + name) }
            }
            guard !files.isEmpty else {
                throw fail("no TAESD weights: expected a diffusers AutoencoderTiny folder or taesd_encoder/taesd_decoder.safetensors")
            }
            for filePath in files {
                let file = try SafeTensorsFile.weights(path: filePath)
                // The decoder's first convolution reads the 4 latent channels; the encoder's the 3 colours.
                let first = file.names.compactMap { name -> (Int, [Int])? in
                    guard name.hasSuffix(".weight"), let index = Int(name.prefix { $0 != "." }), let shape = file.entries[name]?.shape,
                          shape.count == 4 else { return nil }
                    return (index, shape)
                }.min { $0.0 < $1.0 }
                guard let first else { throw fail("\(filePath) has no convolution weights named like TAESD's ('0.weight', '1.conv.0.weight', ...)") }
                let isDecoder = first.1[1] != 3
                for name in file.names {
                    guard let dot = name.firstIndex(of: "."), let index = Int(name[..<dot]) else {
                        throw fail("\(filePath): unexpected tensor '\(name)'")
                    }
                    let canonical = isDecoder ? "decoder.layers.\(index - 1)" : "encoder.layers.\(index)"
                    locations[canonical + name[dot...]] = .init(file: file, key: name)
                }
            }
        }
        let store = ParameterStore(component: "TAESD", locations: locations)
        let hasEncoder = locations.keys.contains { $0.hasPrefix("encoder.layers.") }
        let hasDecoder = locations.keys.contains { $0.hasPrefix("decoder.layers.") }
        guard hasEncoder || hasDecoder else { throw fail("no encoder.layers or decoder.layers tensors: not a TAESD model") }
        encoderLayers = hasEncoder ? try TinyAutoencoder.layers(store.scope("encoder.layers"), decoder: false, fail: fail) : nil
        decoderLayers = hasDecoder ? try TinyAutoencoder.layers(store.scope("decoder.layers"), decoder: true, fail: fail) : nil
        try store.checkAllUsed()
        scalingFactor = scaling
        latentChannels = 4
        let upsamplings = decoderLayers?.filter { if case .upsample = $0 { return true } else { return false } }.count
        let strided = encoderLayers?.filter { if case .conv(let c) = $0 { return c.stride == 2 } else { return false } }.count
        if let upsamplings, let strided, upsamplings != strided {
            throw fail("the encoder downsamples \(strided) times and the decoder upsamples \(upsamplings) times")
        }
        downsamplingFactor = 1 << (upsamplings ?? strided ?? 3)
    }

    /// The layer sequence under `p` (indices 0, 1, ...), checked to chain: the encoder goes from 3
    /// colours to 4 latent channels through stride-2 convolutions; the decoder from 4 to 3, with a
    /// ReLU after its first convolution and nearest 2x upsampling where an index has no weights.
    static func layers(_ p: ParameterScope, decoder: Bool, fail: (String) -> CheckpointError) throws -> [Layer] {
        let part = decoder ? "decoder" : "encoder"
        let indices = Set(p.store.names.compactMap { name -> Int? in
            guard name.hasPrefix(p.prefix + ".") else { return nil }
            return Int(name.dropFirst(p.prefix.count + 1).prefix { $0 != "." })
        })
        guard let last = indices.max(), last < 1000 else { throw fail("the \(part) has no layers, or too many") }
        func convShape(_ scope: ParameterScope) -> [Int]? { p.store.shape(scope.path("weight")) }
        // Conv indices in order, to tell the first and last apart.
        let convIndices = (0...last).filter { convShape(p[$0]) != nil }
        guard let firstConv = convIndices.first, let lastConv = convIndices.last, firstConv == 0, lastConv == last else {
            throw fail("the \(part) must begin and end with a convolution")
        }
        var layers: [Layer] = []
        var channels = decoder ? 4 : 3
        for i in 0...last {
            let scope = p[i]
            if let shape = convShape(scope) {
                guard shape.count == 4, shape[2] == 3, shape[3] == 3, shape[1] == channels, shape[0] > 0, shape[0] <= 4096 else {
                    throw fail("\(scope.path("weight")) has shape \(shape); expected (out, \(channels), 3, 3)")
                }
                let stride = !decoder && i != 0 && i != last ? 2 : 1
                layers.append(.conv(try Conv2d(scope, inputs: shape[1], outputs: shape[0], kernel: 3, stride: stride,
                                               padding: .uniform(1), bias: scope.contains("bias"))))
                channels = shape[0]
            } else if let shape = p.store.shape(scope["conv"][0].path("weight")) {
                guard shape.count == 4, shape[1] == channels, shape[0] > 0, shape[0] <= 4096 else {
                    throw fail("\(scope["conv"][0].path("weight")) has shape \(shape); expected (out, \(channels), 3, 3)")
                }
                layers.append(.block(try TinyBlock(scope, inputs: channels, outputs: shape[0])))
                channels = shape[0]
            } else if decoder {
                layers.append(i == 1 ? .relu : .upsample)
            } else {
                throw fail("encoder.layers.\(i) has no weights")
            }
        }
        guard channels == (decoder ? 3 : 4) else {
            throw fail("the \(part) ends with \(channels) channels; expected \(decoder ? "3 (RGB)" : "4 latent channels")")
        }
        return layers
    }

    /// The encoder's layers: convolutions and blocks only (checked when loading).
    static func encodeLayers(_ layers: [Layer], _ input: Tensor) -> Tensor {
        layers.reduce(input) { x, layer in
            switch layer {
            case .conv(let conv): return conv(x)
            case .block(let block): return block(x)
            case .relu, .upsample: preconditionFailure("TAESD's encoder has no \(layer) layers")
            }
        }
    }

    /// The decoder's layers (all convolutions 3x3 with stride 1, checked when loading), on images
    /// stored channels last from the input on, with the convolution after an upsampling or before a
    /// ReLU doing both: Winograd's transforms run across channels
    /// (`Tensor.conv3x3ChannelsLast`), and the last convolution, to RGB, writes channels first.
    static func decodeChannelsLast(_ layers: [Layer], _ input: Tensor) -> Tensor {
        var x = input.channelsLast()  // (N, h, w, 4)
        var index = layers.startIndex
        while index < layers.endIndex {
            let next = index + 1 < layers.endIndex ? layers[index + 1] : nil
            switch (layers[index], next) {
            case (.conv(let conv), _) where index == layers.endIndex - 1:
                return x.conv3x3FewOutputsChannelsLast(weight: conv.weight.tensor(), bias: conv.bias)  // (N, 3, H, W)
            case (.upsample, .conv(let conv)?):
                x = conv.channelsLast(x, upsampling: true)
                index += 1
            case (.conv(let conv), .relu?):
                x = conv.channelsLast(x, relu: true)
                index += 1
            case (.conv(let conv), _): x = conv.channelsLast(x)
            case (.block(let block), _): x = block.channelsLast(x)
            case (.relu, _): x.applyReLU()
            case (.upsample, _): x = x.channelsFirst().upsampledNearest2x().channelsLast()
            }
            index += 1
        }
        return x.channelsFirst()
    }

    /// Image (N, 3, H, W) in [-1, 1] -> latents (N, 4, H/8, W/8) x scaling factor. TAESD has no
    /// posterior: `noise` is ignored (as diffusers' `retrieve_latents` uses `.latents`).
    /// TAESD has no normalisation or attention, so tiles (`tiling`) change its result only within
    /// a few pixels of their borders, where the blending takes over.
    public func encode(_ image: Tensor, noise: Tensor? = nil, tiling: VAETiling? = nil) -> Tensor {
        VAETiling.apply(tiling, to: image, unit: 1, scale: (1, downsamplingFactor)) { encodeWhole($0) }
    }

    private func encodeWhole(_ image: Tensor) -> Tensor {
        guard let encoderLayers else { preconditionFailure("TAESD \(path) has no encoder (load taesd_encoder.safetensors too)") }
        let out = TinyAutoencoder.encodeLayers(encoderLayers, image.map { ($0 + 1) / 2 })  // (N, 4, H/8, W/8)
        return scalingFactor == 1 ? out : out.scaled(by: scalingFactor)
    }

    /// Latents (N, 4, h, w) -> image (N, 3, 8h, 8w) in [-1, 1]: tanh(z / 3) x 3, the layers, x 2 - 1.
    public func decode(_ latents: Tensor, tiling: VAETiling? = nil) -> Tensor {
        VAETiling.apply(tiling, to: latents, unit: downsamplingFactor, scale: (downsamplingFactor, 1)) { decodeWhole($0) }
    }

    private func decodeWhole(_ latents: Tensor) -> Tensor {
        guard let decoderLayers else { preconditionFailure("TAESD \(path) has no decoder (load taesd_decoder.safetensors too)") }
        let scale = 1 / scalingFactor
        let z = latents.map { tanh($0 * scale / 3) * 3 }
        return TinyAutoencoder.decodeChannelsLast(decoderLayers, z).map { $0 * 2 - 1 }  // (N, 3, 8h, 8w)
    }
}

/// TAESD's block: three 3x3 convolutions with ReLU between, plus the input (1x1 `skip` when the
/// widths differ), then ReLU.
struct TinyBlock: Sendable {
    let conv0: Conv2d, conv2: Conv2d, conv4: Conv2d
    let skip: Conv2d?

    init(_ p: ParameterScope, inputs: Int, outputs: Int) throws {
        conv0 = try Conv2d.same3x3(p["conv"][0], inputs: inputs, outputs: outputs)
        conv2 = try Conv2d.same3x3(p["conv"][2], inputs: outputs, outputs: outputs)
        conv4 = try Conv2d.same3x3(p["conv"][4], inputs: outputs, outputs: outputs)
        skip = inputs == outputs ? nil : try Conv2d(p["skip"], inputs: inputs, outputs: outputs, kernel: 1, bias: false)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv2(conv0(x, relu: true), relu: true)
        return conv4(h, adding: skip?(x) ?? x, relu: true)
    }

    /// The block on images stored channels last.
    func channelsLast(_ x: Tensor) -> Tensor {
        let h = conv2.channelsLast(conv0.channelsLast(x, relu: true), relu: true)
        return conv4.channelsLast(h, adding: skip.map { $0.channelsLast(x) } ?? x, relu: true)
    }
}
