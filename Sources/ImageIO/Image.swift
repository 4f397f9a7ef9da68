import Foundation
import TensorCore

/// An image: float samples in [0, 1], planar (C, H, W), with C = 1 (gray), 2 (gray + alpha),
/// 3 (RGB) or 4 (RGBA). Masks are one-channel images (1 = the area to change).
/// Planar floats make every edit exact for 8-bit data (v / 255 round-trips) and let an image
/// become a model tensor without reshuffling.
public struct Image: Sendable {
    /// The samples, (C, H, W).
    public var pixels: Tensor
    /// Text metadata (PNG text chunks) read from or written to the file.
    public var metadata: [String: String]
    /// Bits per sample of the file the image came from (8 or 16); 16-bit PNGs are written back as 16-bit.
    public var bitDepth: Int
    /// The colour profile and EXIF of the file the image came from, written into the files made from it.
    public var embedded: Embedded

    /// What a photo's file carries besides pixels and text: its ICC colour profile (how its RGB
    /// values are meant) and its EXIF (camera, date, ...; the orientation set to 1, since the pixels
    /// are turned upright when read).
    public struct Embedded: Sendable, Equatable {
        public var iccProfile: Data?
        public var exif: Data?

        public init(iccProfile: Data? = nil, exif: Data? = nil) {
            self.iccProfile = iccProfile
            self.exif = exif
        }

        public var isEmpty: Bool { iccProfile == nil && exif == nil }
    }

    public init(pixels: Tensor, metadata: [String: String] = [:], bitDepth: Int = 8, embedded: Embedded = Embedded()) {
        precondition(pixels.rank == 3 && (1...4).contains(pixels.shape[0]), "Image needs (C, H, W) pixels with 1-4 channels, got \(pixels.shape)")
        self.pixels = pixels
        self.metadata = metadata
        self.bitDepth = bitDepth
        self.embedded = embedded
    }

    /// A blank image of one value.
    public init(width: Int, height: Int, channels: Int, value: Float = 0) {
        self.init(pixels: Tensor(repeating: value, shape: [channels, height, width]))
    }

    public var channels: Int { pixels.shape[0] }
    public var height: Int { pixels.shape[1] }
    public var width: Int { pixels.shape[2] }
    /// Whether the last channel is alpha (gray + alpha or RGBA).
    public var hasAlpha: Bool { channels == 2 || channels == 4 }

    /// One channel as a one-channel image.
    public func channel(_ index: Int) -> Image {
        Image(pixels: pixels.slice(index..<(index + 1)).copied(), bitDepth: bitDepth)
    }
}

// MARK: - Colour

extension Image {
    /// The image as RGB: gray is repeated, alpha is dropped (composited over nothing, as Pillow's `convert("RGB")`).
    public func rgb() -> Image {
        switch channels {
        case 3: return self
        case 4: return Image(pixels: pixels.slice(0..<3).copied(), metadata: metadata, bitDepth: bitDepth, embedded: embedded)
        default:
            let gray = pixels.slice(0..<1)
            return Image(pixels: Tensor.concatenate([gray, gray, gray], axis: 0), metadata: metadata, bitDepth: bitDepth, embedded: embedded)
        }
    }

    /// The image as one-channel luminance, L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2, as Pillow's `convert("L")`).
    public func luminance() -> Image {
        if channels <= 2 { return Image(pixels: pixels.slice(0..<1).copied(), metadata: metadata, bitDepth: bitDepth, embedded: embedded) }
        let plane = width * height
        var out = Tensor(uninitialized: [1, height, width])
        let src = pixels.pointer, dst = out.mutablePointer()
        Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
            for i in range { dst[i] = 0.299 * src[i] + 0.587 * src[plane + i] + 0.114 * src[2 * plane + i] }
        }
        return Image(pixels: out, metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    /// The alpha channel, or nil when the image has none.
    public func alpha() -> Image? { hasAlpha ? channel(channels - 1) : nil }
}

// MARK: - Tensors for the models

extension Image {
    /// The RGB image as a model input in [-1, 1]: (1, 3, H, W).
    public func tensor() -> Tensor {
        rgb().pixels.map { $0 * 2 - 1 }.reshaped([1, 3, height, width])
    }

    /// An image from a model output in [-1, 1], (1, 3, H, W) or (3, H, W): (x / 2 + 0.5) clamped to [0, 1], as diffusers.
    public init(modelOutput tensor: Tensor) {
        let shape = tensor.rank == 4 ? Array(tensor.shape.dropFirst()) : tensor.shape
        precondition(shape.count == 3, "an image tensor must be (1, C, H, W) or (C, H, W), got \(tensor.shape)")
        self.init(pixels: tensor.reshaped(shape).map { Swift.min(Swift.max($0 / 2 + 0.5, 0), 1) })
    }

    /// A one-channel mask as a (1, 1, H, W) tensor in [0, 1].
    public func maskTensor() -> Tensor {
        (channels == 1 ? pixels : luminance().pixels).reshaped([1, 1, height, width])
    }
}
