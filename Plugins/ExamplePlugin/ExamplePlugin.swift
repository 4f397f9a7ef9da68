import Foundation
import ImageIO
import NodeKit
import SDFlowPlugin
import TensorCore

/// An example node pack built as a shared library (`libExamplePlugin.so`) and loaded by sdflow
/// at run time: a sepia tone curve and a colour-key mask. See the README's "Writing a node pack".

/// `sepia`: the classic sepia matrix, blended with the original by `strength`.
struct Sepia: Node {
    static let strength = Param<Double>("strength", .number(0...1), default: 1, help: "0 keeps the image, 1 is full sepia")
    static let description = NodeDescription(
        name: "sepia", summary: "Give an image a sepia tone.",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("image", .image, help: "the toned image")],
        parameters: [strength])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let image = try context.image("image")
        let rgb = image.rgb()
        let strength = Float(try context[Self.strength])
        let plane = rgb.width * rgb.height
        var out = rgb.pixels
        let p = out.mutablePointer()
        for i in 0..<plane {
            let (r, g, b) = (p[i], p[plane + i], p[2 * plane + i])
            let toned = [0.393 * r + 0.769 * g + 0.189 * b, 0.349 * r + 0.686 * g + 0.168 * b, 0.272 * r + 0.534 * g + 0.131 * b]
            for c in 0..<3 {
                let original = p[c * plane + i]
                p[c * plane + i] = Swift.min(1, original + strength * (toned[c] - original))
            }
        }
        var result = Image(pixels: out, metadata: image.metadata, bitDepth: image.bitDepth)
        if let alpha = image.alpha() { result = Image(pixels: Tensor.concatenate([out, alpha.pixels], axis: 0), metadata: image.metadata, bitDepth: image.bitDepth) }
        return ["image": .image(result)]
    }
}

/// `color_key_mask`: removes a background by colour: the mask is 0 where a pixel is close to
/// the key colour and 1 elsewhere, with a soft edge.
struct ColorKeyMask: Node {
    static let color = Param<String>("color", .text, default: "#00ff00", help: "the key colour as #rrggbb")
    static let tolerance = Param<Double>("tolerance", .number(0...1), default: 0.25,
        help: "colour distance (0...1) still counted as background")
    static let softness = Param<Double>("softness", .number(0...1), default: 0.1, help: "width of the soft edge beyond the tolerance")
    static let description = NodeDescription(
        name: "color_key_mask", summary: "Mask out a background by colour key (0 near the key colour, 1 elsewhere).",
        inputs: [.init("image", .image, help: "the image")],
        outputs: [.init("mask", .mask, help: "1 on the foreground")],
        parameters: [color, tolerance, softness])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let hex = try context[Self.color].trimmingCharacters(in: CharacterSet(charactersIn: "# "))
        guard hex.count == 6, let value = UInt32(hex, radix: 16) else {
            throw NodeError.invalidInput("color '\(hex)' is not #rrggbb")
        }
        let key = [Float((value >> 16) & 0xff) / 255, Float((value >> 8) & 0xff) / 255, Float(value & 0xff) / 255]
        let tolerance = Float(try context[Self.tolerance]), softness = Swift.max(Float(try context[Self.softness]), 1e-6)
        let rgb = try context.image("image").rgb()
        let plane = rgb.width * rgb.height
        var mask = Tensor(zeros: [1, rgb.height, rgb.width])
        let p = rgb.pixels.pointer, m = mask.mutablePointer()
        for i in 0..<plane {
            var d: Float = 0
            for c in 0..<3 { let x = p[c * plane + i] - key[c]; d += x * x }
            d = (d / 3).squareRoot()
            m[i] = Swift.min(1, Swift.max(0, (d - tolerance) / softness))
        }
        return ["mask": .mask(Image(pixels: mask))]
    }
}

/// `fail_always`: a node that throws, to show that a failing plugin node fails only itself.
struct FailAlways: Node {
    static let description = NodeDescription(
        name: "fail_always", summary: "Always fails (to test error handling).",
        inputs: [.init("image", .image, help: "ignored")],
        outputs: [.init("image", .image, help: "never produced")])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        throw NodeError.failed("this node always fails")
    }
}

/// The plugin's entry point.
@_cdecl("sdflow_plugin_pack")
public func sdflowPluginPack() -> UnsafeRawPointer {
    PluginExport.pack(NodePack(name: "example", version: "1.0", nodes: [Sepia.self, ColorKeyMask.self, FailAlways.self]))
}
