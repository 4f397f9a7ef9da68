import Foundation
import ImageIO
import NodeKit
import TensorCore

/// `resize_image`: Lanczos, bicubic, bilinear or nearest, to an exact size or fitting/filling it.
struct ResizeImage: Node {
    static let description = NodeDescription(
        name: "resize_image", summary: "Resize an image (Pillow-compatible filters).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the resized image")],
        parameters: [
            .init("width", .integer(1...16384), help: "target width"),
            .init("height", .integer(1...16384), help: "target height"),
            .init("mode", .choice(ResizeMode.allCases.map(\.rawValue)), default: .text("exact"),
                  help: "exact: that size; fit: inside it, keeping the aspect ratio; fill: cover it and centre-crop"),
            .init("filter", .choice(ResampleFilter.allCases.map(\.rawValue)), default: .text("lanczos"), help: "resampling filter"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        try requireSize(width: try context.int("width"), height: try context.int("height"))
        let resized = image.resized(toWidth: try context.int("width"), height: try context.int("height"),
                                    mode: ResizeMode(rawValue: try context.string("mode"))!,
                                    filter: ResampleFilter(rawValue: try context.string("filter"))!)
        return ["image": .image(resized)]
    }
}

/// `scale_image`: an image resized by a factor (the size rounded), the plain upscale of a photo
/// before tiled refinement.
struct ScaleImage: Node {
    static let description = NodeDescription(
        name: "scale_image", summary: "Resize an image by a factor (Pillow-compatible filters).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the resized image")],
        parameters: [
            .init("scale", .number(0.01...16), default: .number(2), help: "both sides times this (rounded to whole pixels)"),
            .init("filter", .choice(ResampleFilter.allCases.map(\.rawValue)), default: .text("lanczos"), help: "resampling filter"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        let scale = try context.double("scale")
        let (width, height) = (Int((Double(image.width) * scale).rounded()), Int((Double(image.height) * scale).rounded()))
        guard width >= 1 && height >= 1 else { throw NodeError.invalidInput("scale \(scale) makes the \(image.width)x\(image.height) image empty") }
        try requireSize(width: width, height: height)
        let resized = image.resized(toWidth: width, height: height, mode: .exact, filter: ResampleFilter(rawValue: try context.string("filter"))!)
        return ["image": .image(resized)]
    }
}

/// `crop_image`: a rectangle of an image (parts outside are black).
struct CropImage: Node {
    static let description = NodeDescription(
        name: "crop_image", summary: "Cut a rectangle out of an image.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the rectangle")],
        parameters: [
            .init("x", .integer(0...65535), default: .integer(0), help: "left edge"),
            .init("y", .integer(0...65535), default: .integer(0), help: "top edge"),
            .init("width", .integer(1...65535), help: "width"),
            .init("height", .integer(1...65535), help: "height"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let rect = PixelRect(x: try context.int("x"), y: try context.int("y"), width: try context.int("width"), height: try context.int("height"))
        try requireSize(width: rect.width, height: rect.height)
        return ["image": .image(try context.image("image").cropped(rect))]
    }
}

/// `pad_image`: adds a border.
struct PadImage: Node {
    static let description = NodeDescription(
        name: "pad_image", summary: "Add a border: edge pixels, a mirror image, or a constant value.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the padded image")],
        parameters: [
            .init("top", .integer(0...16384), default: .integer(0), help: "pixels above"),
            .init("bottom", .integer(0...16384), default: .integer(0), help: "pixels below"),
            .init("left", .integer(0...16384), default: .integer(0), help: "pixels on the left"),
            .init("right", .integer(0...16384), default: .integer(0), help: "pixels on the right"),
            .init("mode", .choice(["edge", "reflect", "constant"]), default: .text("edge"), help: "how the border is filled"),
            .init("value", .number(0...1), default: .number(0), help: "the constant (0 black ... 1 white)"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let mode: PaddingMode
        switch try context.string("mode") {
        case "reflect": mode = .reflect
        case "constant": mode = .constant(Float(try context.double("value")))
        default: mode = .edge
        }
        let source = try context.image("image")
        try requireSize(width: source.width + (try context.int("left")) + (try context.int("right")),
                        height: source.height + (try context.int("top")) + (try context.int("bottom")))
        let padded = source.padded(top: try context.int("top"), bottom: try context.int("bottom"),
                                                       left: try context.int("left"), right: try context.int("right"), mode: mode)
        return ["image": .image(padded)]
    }
}

/// `fit_to_multiple`: both sides multiples of 8 (what the VAE needs) by cropping, padding or resizing.
struct FitToMultiple: Node {
    static let description = NodeDescription(
        name: "fit_to_multiple", summary: "Make the width and height multiples of a number (8 for the VAE).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the fitted image")],
        parameters: [
            .init("multiple", .integer(1...512), default: .integer(8), help: "the multiple"),
            .init("mode", .choice(Image.MultipleFit.allCases.map(\.rawValue)), default: .text("crop"),
                  help: "crop the excess, pad with edge pixels, or resize to the nearest multiple"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let fitted = try context.image("image").fittedToMultiple(of: try context.int("multiple"),
                                                                mode: Image.MultipleFit(rawValue: try context.string("mode"))!)
        return ["image": .image(fitted)]
    }
}

/// `convert_image`: colour conversions.
struct ConvertImage: Node {
    static let description = NodeDescription(
        name: "convert_image", summary: "Convert to RGB, RGBA (opaque alpha added) or grayscale.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the converted image")],
        parameters: [.init("to", .choice(["rgb", "rgba", "gray"]), default: .text("rgb"), help: "the colour mode")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        switch try context.string("to") {
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
    static let description = NodeDescription(
        name: "composite", summary: "Blend a foreground over a background through a mask (1 = foreground).",
        inputs: [
            .init("foreground", .image, help: "shown where the mask is 1"),
            .init("background", .image, help: "shown where the mask is 0"),
            .init("mask", .mask, help: "the blend weights"),
        ],
        outputs: [.init("image", .image, help: "the composite")],
        parameters: [.init("feather", .number(0...256), default: .number(0), help: "Gaussian blur (sigma, pixels) applied to the mask first")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let background = try context.image("background")
        let foreground = try Composite.matched(try context.image("foreground"), to: background)
        let mask = try Composite.maskMatched(try context.mask("mask"), to: background, feather: try context.double("feather"))
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
    static let description = NodeDescription(
        name: "mask_blend", summary: "Keep the original pixels outside the mask and the generated ones inside (inpainting's final composite).",
        inputs: [
            .init("image", .image, help: "the generated image (resized to the original if needed)"),
            .init("original", .image, help: "the original photo"),
            .init("mask", .mask, help: "the inpainting mask (1 = generated)"),
        ],
        outputs: [.init("image", .image, help: "the blend")],
        parameters: [.init("feather", .number(0...256), default: .number(0), help: "Gaussian blur (sigma, pixels) of the mask edge")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let original = try context.image("original")
        let generated = try Composite.matched(try context.image("image"), to: original)
        let mask = try Composite.maskMatched(try context.mask("mask"), to: original, feather: try context.double("feather"))
        return ["image": .image(generated.composited(over: original, mask: mask))]
    }
}

/// Refuses to make an image larger than sdflow can write and read back (`ImageFile.sizeProblem`),
/// before its memory is allocated.
func requireSize(width: Int, height: Int) throws {
    if let problem = ImageFile.sizeProblem(width: width, height: height) { throw NodeError.invalidInput(problem) }
}
