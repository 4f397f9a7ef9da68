import Foundation
import ImageIO
import NodeKit
import TensorCore

// The control images ControlNets expect, made from photos (A1111's preprocessor names). Depth,
// normal and pose maps come from models (annotators) that sdflow does not run: give such maps as images.

/// `canny`: the edges of an image, equal to OpenCV's `cv2.Canny` on its RGB pixels (the canny ControlNet's input).
struct Canny: Node {
    static let low = Param<Double>("low_threshold", .number(0...1000), default: 100,
        help: "gradients over this are edges when connected to a strong one (A1111's and controlnet_aux's 100)")
    static let high = Param<Double>("high_threshold", .number(0...1000), default: 200, help: "gradients over this are edges (200)")
    static let description = NodeDescription(
        name: "canny", summary: "Find the edges of an image (OpenCV's Canny, white on black), for the canny ControlNet.",
        inputs: [.init("image", .image, help: "the photo")],
        outputs: [.init("image", .image, help: "the edges: white (1) on black, RGB, the photo's size")],
        parameters: [low, high])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let edges = try context.image("image").cannyEdges(low: try context[Self.low], high: try context[Self.high])
        return ["image": .image(edges.rgb())]
    }
}

/// `tile_resample`: a photo made coarser for the tile ControlNet, which redraws detail on it
/// (A1111's tile_resample: a smaller copy, which the ControlNet's resizing brings back to size).
struct TileResample: Node {
    static let rate = Param<Double>("down_sampling_rate", .number(1...16), default: 1,
        help: "divide both sides by this (1: keep the size)")
    static let blur = Param<Double>("blur", .number(0...64), default: 0, help: "Gaussian blur (pixels) after resizing; 0: none")
    static let description = NodeDescription(
        name: "tile_resample", summary: "Shrink and/or blur a photo for the tile ControlNet.",
        inputs: [.init("image", .image, help: "the photo")],
        outputs: [.init("image", .image, help: "the control image")],
        parameters: [rate, blur])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image"), rate = try context[Self.rate]
        let (w, h) = (Swift.max(1, Int((Double(image.width) / rate).rounded())), Swift.max(1, Int((Double(image.height) / rate).rounded())))
        return ["image": .image(image.resized(width: w, height: h, filter: .lanczos).blurred(sigma: Float(try context[Self.blur])))]
    }
}

/// `invert_image`: 1 - every colour value (white-background line art to the black-background maps ControlNets expect).
struct InvertImage: Node {
    static let description = NodeDescription(
        name: "invert_image", summary: "Invert an image's colours (alpha kept), e.g. black lines on white to white on black.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the inverted image")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        let colours = image.channels == 4 || image.channels == 2 ? image.channels - 1 : image.channels
        let plane = image.width * image.height
        var pixels = image.pixels
        let p = pixels.mutablePointer()
        for i in 0..<(colours * plane) { p[i] = 1 - p[i] }
        return ["image": .image(Image(pixels: pixels, metadata: image.metadata))]
    }
}
