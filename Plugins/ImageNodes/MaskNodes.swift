import Foundation
import ImageIO
import NodeKit
import TensorCore

/// `image_to_mask`: a mask from an image's luminance or alpha.
struct ImageToMask: Node {
    static let channel = Param<String>("channel", .choice(["luminance", "alpha"]), default: "luminance", help: "the source channel")
    static let description = NodeDescription(
        name: "image_to_mask", summary: "Make a mask from an image's luminance or alpha channel.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("mask", .mask, help: "the mask")],
        parameters: [channel])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        let alpha = try context[Self.channel] == "alpha"
        if alpha && !image.hasAlpha { throw NodeError.invalidInput("the image has no alpha channel") }
        return ["mask": .mask(image.mask(fromAlpha: alpha))]
    }
}

/// `mask_to_image`: a gray image of a mask.
struct MaskToImage: Node {
    static let description = NodeDescription(
        name: "mask_to_image", summary: "Turn a mask into a grayscale image (to save or edit it).",
        inputs: [.init("mask", .mask, help: "the mask")],
        outputs: [.init("image", .image, help: "the image")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        ["image": .image(try context.mask("mask"))]
    }
}

/// `edit_mask`: threshold, invert, grow or shrink, feather: the usual mask clean-up in one node.
struct EditMask: Node {
    static let threshold = Param<Double>("threshold", .number(0...1), default: 0, help: "make it binary at this level (0: leave as is)")
    static let grow = Param<Int>("grow", .integer(-512...512), default: 0, help: "pixels to grow (negative: shrink)")
    static let feather = Param<Double>("feather", .number(0...256), default: 0, help: "Gaussian blur sigma in pixels")
    static let invert = Param<Bool>("invert", .boolean, default: false, help: "swap the masked and kept areas")
    static let description = NodeDescription(
        name: "edit_mask", summary: "Threshold, grow or shrink, feather and/or invert a mask (in that order).",
        inputs: [.init("mask", .mask, help: "the mask")],
        outputs: [.init("mask", .mask, help: "the edited mask")],
        parameters: [threshold, grow, feather, invert])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        var mask = try context.mask("mask")
        let level = try context[Self.threshold]
        if level > 0 { mask = mask.thresholded(Float(level)) }
        mask = mask.grown(by: try context[Self.grow])
        let sigma = try context[Self.feather]
        if sigma > 0 { mask = mask.blurred(sigma: Float(sigma)) }
        if try context[Self.invert] { mask = mask.inverted() }
        return ["mask": .mask(mask)]
    }
}

/// `crop_to_mask`: A1111's "only masked" inpainting, first half: the masked area of a large
/// photo plus some context, at the model's resolution.
struct CropToMask: Node {
    static let padding = Param<Int>("padding", .integer(0...4096), default: 32, help: "context pixels around the mask")
    static let width = Param<Int>("width", .integer(8...4096), default: 512, help: "width of the cut-out")
    static let height = Param<Int>("height", .integer(8...4096), default: 512, help: "height of the cut-out")
    static let description = NodeDescription(
        name: "crop_to_mask", summary: "Cut the masked area (plus padding) out of a photo at a given size, for inpainting at full resolution.",
        inputs: [.init("image", .image, help: "the photo"), .init("mask", .mask, help: "the mask")],
        outputs: [
            .init("image", .image, help: "the cut-out, resized to width x height (carries the crop region for paste_back)"),
            .init("mask", .mask, help: "the mask cut the same way"),
        ],
        parameters: [padding, width, height])

    /// Metadata key of the crop region: "x,y,width,height".
    static let regionKey = "sdflow:crop-region"

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image"), mask = try context.mask("mask")
        guard mask.width == image.width && mask.height == image.height else {
            throw NodeError.invalidInput("the mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height)")
        }
        let (w, h) = (try context[Self.width], try context[Self.height])
        guard let crop = MaskCrop(mask: mask, padding: try context[Self.padding], targetWidth: w, targetHeight: h) else {
            throw NodeError.invalidInput("the mask is empty: nothing to inpaint")
        }
        var cut = crop.cut(image, width: w, height: h)
        let r = crop.region
        cut.metadata[regionKey] = "\(r.x),\(r.y),\(r.width),\(r.height)"
        return ["image": .image(cut), "mask": .mask(crop.cut(mask, width: w, height: h, filter: .bilinear))]
    }
}

/// `paste_back`: "only masked" inpainting, second half.
struct PasteBack: Node {
    static let feather = Param<Double>("feather", .number(0...256), default: 4, help: "Gaussian blur sigma of the mask edge")
    static let description = NodeDescription(
        name: "paste_back", summary: "Scale an edited cut-out back into the photo it came from, through the (feathered) mask.",
        inputs: [
            .init("image", .image, help: "the edited cut-out"),
            .init("crop", .image, help: "the cut-out from crop_to_mask (it carries the region)"),
            .init("original", .image, help: "the full photo"),
            .init("mask", .mask, help: "the full-size mask"),
        ],
        outputs: [.init("image", .image, help: "the photo with the edit pasted in; unchanged outside the mask")],
        parameters: [feather])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let crop = try context.image("crop")
        guard let numbers = crop.metadata[CropToMask.regionKey]?.split(separator: ",").compactMap({ Int($0) }), numbers.count == 4 else {
            throw NodeError.invalidInput("input 'crop' does not come from crop_to_mask (it has no crop region)")
        }
        let original = try context.image("original")
        let region = PixelRect(x: numbers[0], y: numbers[1], width: numbers[2], height: numbers[3])
        let mask = try Composite.maskMatched(try context.mask("mask"), to: original, feather: try context[Self.feather])
        let pasted = MaskCrop(region: region).pasteBack(try context.image("image"), into: original, mask: mask)
        return ["image": .image(pasted)]
    }
}
