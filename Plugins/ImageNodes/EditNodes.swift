import Foundation
import ImageIO
import NodeKit
import TensorCore

/// `resize_image`: Lanczos, bicubic, bilinear or nearest, to an exact size or fitting/filling it.
struct ResizeImage: Node {
    static let width = Param<Int>("width", .integer(1...16384), help: "target width")
    static let height = Param<Int>("height", .integer(1...16384), help: "target height")
    static let mode = Param<ResizeMode>("mode", default: .exact,
        help: "exact: that size; fit: inside it, keeping the aspect ratio; fill: cover it and centre-crop")
    static let filter = Param<ResampleFilter>("filter", default: .lanczos, help: "resampling filter")
    static let description = NodeDescription(
        name: "resize_image", summary: "Resize an image (Pillow-compatible filters).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the resized image")],
        parameters: [width, height, mode, filter])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        try requireSize(width: try context[Self.width], height: try context[Self.height])
        let resized = image.resized(toWidth: try context[Self.width], height: try context[Self.height],
                                    mode: try context[Self.mode],
                                    filter: try context[Self.filter])
        return ["image": .image(resized)]
    }
}

/// `scale_image`: an image resized by a factor (the size rounded), the plain upscale of a photo
/// before tiled refinement.
struct ScaleImage: Node {
    static let scale = Param<Double>("scale", .number(0.01...16), default: 2, help: "both sides times this (rounded to whole pixels)")
    static let filter = Param<ResampleFilter>("filter", default: .lanczos, help: "resampling filter")
    static let description = NodeDescription(
        name: "scale_image", summary: "Resize an image by a factor (Pillow-compatible filters).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the resized image")],
        parameters: [scale, filter])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        let scale = try context[Self.scale]
        let (width, height) = (Int((Double(image.width) * scale).rounded()), Int((Double(image.height) * scale).rounded()))
        guard width >= 1 && height >= 1 else { throw NodeError.invalidInput("scale \(scale) makes the \(image.width)x\(image.height) image empty") }
        try requireSize(width: width, height: height)
        let resized = image.resized(toWidth: width, height: height, mode: .exact, filter: try context[Self.filter])
        return ["image": .image(resized)]
    }
}

/// `crop_image`: a rectangle of an image (parts outside are black).
struct CropImage: Node {
    static let x = Param<Int>("x", .integer(0...65535), default: 0, help: "left edge")
    static let y = Param<Int>("y", .integer(0...65535), default: 0, help: "top edge")
    static let width = Param<Int>("width", .integer(1...65535), help: "width")
    static let height = Param<Int>("height", .integer(1...65535), help: "height")
    static let description = NodeDescription(
        name: "crop_image", summary: "Cut a rectangle out of an image.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the rectangle")],
        parameters: [x, y, width, height])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let rect = PixelRect(x: try context[Self.x], y: try context[Self.y], width: try context[Self.width], height: try context[Self.height])
        try requireSize(width: rect.width, height: rect.height)
        return ["image": .image(try context.image("image").cropped(rect))]
    }
}

/// `pad_image`: adds a border.
struct PadImage: Node {
    static let top = Param<Int>("top", .integer(0...16384), default: 0, help: "pixels above")
    static let bottom = Param<Int>("bottom", .integer(0...16384), default: 0, help: "pixels below")
    static let left = Param<Int>("left", .integer(0...16384), default: 0, help: "pixels on the left")
    static let right = Param<Int>("right", .integer(0...16384), default: 0, help: "pixels on the right")
    static let mode = Param<String>("mode", .choice(["edge", "reflect", "constant"]), default: "edge", help: "how the border is filled")
    static let value = Param<Double>("value", .number(0...1), default: 0, help: "the constant (0 black ... 1 white)")
    static let description = NodeDescription(
        name: "pad_image", summary: "Add a border: edge pixels, a mirror image, or a constant value.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the padded image")],
        parameters: [top, bottom, left, right, mode, value])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let mode: PaddingMode
        switch try context[Self.mode] {
        case "reflect": mode = .reflect
        case "constant": mode = .constant(Float(try context[Self.value]))
        default: mode = .edge
        }
        let source = try context.image("image")
        try requireSize(width: source.width + (try context[Self.left]) + (try context[Self.right]),
                        height: source.height + (try context[Self.top]) + (try context[Self.bottom]))
        let padded = source.padded(top: try context[Self.top], bottom: try context[Self.bottom],
                                                       left: try context[Self.left], right: try context[Self.right], mode: mode)
        return ["image": .image(padded)]
    }
}

/// `fit_to_multiple`: both sides multiples of 8 (what the VAE needs) by cropping, padding or resizing.
struct FitToMultiple: Node {
    static let multiple = Param<Int>("multiple", .integer(1...512), default: 8, help: "the multiple")
    static let mode = Param<Image.MultipleFit>("mode", default: .crop,
        help: "crop the excess, pad with edge pixels, or resize to the nearest multiple")
    static let description = NodeDescription(
        name: "fit_to_multiple", summary: "Make the width and height multiples of a number (8 for the VAE).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the fitted image")],
        parameters: [multiple, mode])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let fitted = try context.image("image").fittedToMultiple(of: try context[Self.multiple],
                                                                mode: try context[Self.mode])
        return ["image": .image(fitted)]
    }
}

/// `convert_image`: colour conversions.
struct ConvertImage: Node {
    static let to = Param<String>("to", .choice(["rgb", "rgba", "gray"]), default: "rgb", help: "the colour mode")
    static let description = NodeDescription(
        name: "convert_image", summary: "Convert to RGB, RGBA (opaque alpha added) or grayscale.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the converted image")],
        parameters: [to])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        switch try context[Self.to] {
        case "gray": return ["image": .image(image.luminance())]
        case "rgba":
            let alpha = image.alpha()?.pixels ?? Tensor(repeating: 1, shape: [1, image.height, image.width])
            return ["image": .image(Image(pixels: Tensor.concatenate([image.rgb().pixels, alpha], axis: 0), metadata: image.metadata))]
        default: return ["image": .image(image.rgb())]
        }
    }
}

/// `composite`: one image over another through a mask.
struct Composite: Node {
    static let feather = Param<Double>("feather", .number(0...256), default: 0,
        help: "Gaussian blur (sigma, pixels) applied to the mask first")
    static let description = NodeDescription(
        name: "composite", summary: "Blend a foreground over a background through a mask (1 = foreground).",
        inputs: [
            .init("foreground", .image, help: "shown where the mask is 1"),
            .init("background", .image, help: "shown where the mask is 0"),
            .init("mask", .mask, help: "the blend weights"),
        ],
        outputs: [.init("image", .image, help: "the composite")],
        parameters: [feather])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let background = try context.image("background")
        let foreground = try Composite.matched(try context.image("foreground"), to: background)
        let mask = try Composite.maskMatched(try context.mask("mask"), to: background, feather: try context[Self.feather])
        return ["image": .image(foreground.composited(over: background, mask: mask))]
    }

    /// `image` with the size and channel count of `reference` (resized with Lanczos when the size differs).
    static func matched(_ image: Image, to reference: Image) throws -> Image {
        var result = image
        if result.width != reference.width || result.height != reference.height {
            result = result.resized(width: reference.width, height: reference.height, filter: .lanczos)
        }
        if result.channels != reference.channels {
            switch reference.channels {
            case 1: result = result.luminance()
            case 3: result = result.rgb()
            case 4:
                let alpha = reference.alpha()!.pixels
                result = Image(pixels: Tensor.concatenate([result.rgb().pixels, alpha], axis: 0), metadata: result.metadata)
            default: throw NodeError.invalidInput("cannot composite a \(result.channels)-channel image onto a \(reference.channels)-channel one")
            }
        }
        return result
    }

    /// A mask at the reference's size, feathered by `sigma` pixels.
    static func maskMatched(_ mask: Image, to reference: Image, feather sigma: Double) throws -> Image {
        var m = mask
        if m.width != reference.width || m.height != reference.height {
            m = m.resized(width: reference.width, height: reference.height, filter: .bilinear)
        }
        return sigma > 0 ? m.blurred(sigma: Float(sigma)) : m
    }
}

/// `mask_blend`: the last step of inpainting: the generated image inside the (feathered) mask,
/// the original pixels, unchanged, outside it.
struct MaskBlend: Node {
    static let feather = Param<Double>("feather", .number(0...256), default: 0, help: "Gaussian blur (sigma, pixels) of the mask edge")
    static let description = NodeDescription(
        name: "mask_blend", summary: "Keep the original pixels outside the mask and the generated ones inside (inpainting's final composite).",
        inputs: [
            .init("image", .image, help: "the generated image (resized to the original if needed)"),
            .init("original", .image, help: "the original photo"),
            .init("mask", .mask, help: "the inpainting mask (1 = generated)"),
        ],
        outputs: [.init("image", .image, help: "the blend")],
        parameters: [feather])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let original = try context.image("original")
        let generated = try Composite.matched(try context.image("image"), to: original)
        let mask = try Composite.maskMatched(try context.mask("mask"), to: original, feather: try context[Self.feather])
        return ["image": .image(generated.composited(over: original, mask: mask))]
    }
}

/// Refuses to make an image larger than sdflow can write and read back (`ImageFile.sizeProblem`),
/// before its memory is allocated.
func requireSize(width: Int, height: Int) throws {
    if let problem = ImageFile.sizeProblem(width: width, height: height) { throw NodeError.invalidInput(problem) }
}
