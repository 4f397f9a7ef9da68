import ImageIO
import TensorCore

/// The type of a node port: what flows along an edge of the workflow graph.
public indirect enum ValueType: Hashable, Sendable, CustomStringConvertible {
    case image, mask, latent, conditioning, unet, clip, vae, upscaler, tensor, number, text
    /// A loaded ControlNet, and ControlNets applied to their control images (what `denoise` takes).
    case controlnet, control
    /// A list of values, e.g. every image of a folder; nodes that take one value map over it.
    case list(ValueType)

    public var description: String {
        switch self {
        case .image: return "image"
        case .mask: return "mask"
        case .latent: return "latent"
        case .conditioning: return "conditioning"
        case .unet: return "unet"
        case .clip: return "clip"
        case .vae: return "vae"
        case .upscaler: return "upscaler"
        case .controlnet: return "controlnet"
        case .control: return "control"
        case .tensor: return "tensor"
        case .number: return "number"
        case .text: return "text"
        case .list(let element): return "list of \(element)"
        }
    }

    /// The type of one item (the type itself unless it is a list).
    public var element: ValueType {
        if case .list(let e) = self { return e }
        return self
    }
}

/// A loaded model (or one part of a checkpoint) passed between nodes. The payload is whatever
/// the producing pack stores. Cache keys of what a model produces come from the key of the node
/// that made the handle (its files' fingerprints and parameters), not from the handle.
/// `@unchecked Sendable`: the payload is a loaded model, whose weights are not changed after loading
/// (weights widened on first use are behind the model's own locks).
public final class ModelHandle: @unchecked Sendable {
    public let type: ValueType
    public let payload: AnyObject

    public init(type: ValueType, payload: AnyObject) {
        self.type = type
        self.payload = payload
    }
}

/// A value flowing between nodes.
public enum Value: Sendable {
    /// An image (C, H, W) in [0, 1].
    case image(Image)
    /// A one-channel mask in [0, 1]; 1 = change.
    case mask(Image)
    /// Scaled VAE latents (N, 4, h, w).
    case latent(Tensor)
    /// Text-encoder output (N, 77 x chunks, C) and, for SDXL, the second text encoder's pooled output (N, P).
    case conditioning(Tensor, pooled: Tensor? = nil)
    /// A UNet, text encoder (clip) or VAE.
    case model(ModelHandle)
    case tensor(Tensor)
    case number(Double)
    case text(String)
    case list([Value])
    /// An item of a list that could not be produced (e.g. a corrupt file in a folder): it is
    /// reported, downstream nodes skip it, and the other items go on. `source` names its file.
    case failed(String, source: String? = nil)

    /// The value's type; a list's element type is its first item's (text when empty).
    public var type: ValueType {
        switch self {
        case .image: return .image
        case .mask: return .mask
        case .latent: return .latent
        case .conditioning: return .conditioning
        case .model(let handle): return handle.type
        case .tensor: return .tensor
        case .number: return .number
        case .text: return .text
        case .list(let items): return .list(items.first { if case .failed = $0 { return false }; return true }?.type ?? .text)
        case .failed: return .text
        }
    }
}

// MARK: - Typed access

extension Value {
    public var imageValue: Image? { if case .image(let i) = self { return i }; return nil }
    public var maskValue: Image? { if case .mask(let m) = self { return m }; return nil }
    /// A latent (or a plain tensor used as one).
    public var latentValue: Tensor? {
        switch self { case .latent(let t), .tensor(let t): return t; default: return nil }
    }
    /// Conditioning (or a plain tensor used as such).
    public var conditioningValue: Tensor? {
        switch self { case .conditioning(let t, _), .tensor(let t): return t; default: return nil }
    }
    /// Any tensor-valued value: a tensor, latent or conditioning.
    public var tensorValue: Tensor? {
        switch self { case .tensor(let t), .latent(let t), .conditioning(let t, _): return t; default: return nil }
    }
    /// SDXL conditioning's pooled text embedding (nil for SD 1.x's).
    public var pooledValue: Tensor? { if case .conditioning(_, let pooled) = self { return pooled }; return nil }
    public var numberValue: Double? { if case .number(let n) = self { return n }; return nil }
    public var textValue: String? { if case .text(let s) = self { return s }; return nil }
    public var listValue: [Value]? { if case .list(let l) = self { return l }; return nil }
    public var modelValue: ModelHandle? { if case .model(let m) = self { return m }; return nil }
}

/// Metadata keys the engine and the image nodes agree on.
public enum ImageMetadataKey {
    /// The file an image was loaded from.
    public static let source = "sdflow:source"
    /// PNG text chunks of saved images, read back to run the workflow again: the workflow's
    /// text, its file's path, its resolved parameters (JSON), and the result's cache key.
    public static let workflow = "sdflow:workflow", workflowPath = "sdflow:workflow-path"
    public static let parameters = "sdflow:parameters", cacheKey = "sdflow:key"
}
