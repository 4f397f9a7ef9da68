import Foundation
import ImageIO
import SafeTensors
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// Image and tensor nodes run through workflows on small hand-made images, each against values
/// computed by hand from the node's definition (not against sdflow's own earlier output).
@Suite struct NodeTests {
    let folder = TemporaryFolder()

    /// A W x H RGB image whose sample (c, y, x) is (c * 80 + y * 10 + x) / 255, saved as 8-bit PNG.
    func numbered(width: Int, height: Int, name: String = "in.png") throws -> String {
        var values: [Float] = []
        for c in 0..<3 { for y in 0..<height { for x in 0..<width { values.append(Float(c * 80 + y * 10 + x) / 255) } } }
        try ImageFile.write(Image(pixels: Tensor(shape: [3, height, width], values: values)), to: folder.file(name))
        return folder.file(name)
    }

    /// Runs `nodes` (YAML lines under `nodes:`) and returns the report.
    @discardableResult
    func run(_ nodes: String) throws -> RunReport {
        let yaml = "version: 1\nnodes:\n" + nodes.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
        let graph = try Graph(workflow: Workflow.parse(yaml, path: folder.file("w.yaml")), registry: TestEngine.registry(),
                              currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: nil)).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        return report
    }

    /// The 8-bit samples of a saved PNG, as integers (C, H, W) flattened.
    func samples(_ name: String) throws -> (width: Int, height: Int, channels: Int, values: [Int]) {
        let image = try ImageFile.read(folder.file(name))
        return (image.width, image.height, image.channels, image.pixels.scalars.map { Int(($0 * 255).rounded()) })
    }

    /// c * 80 + y * 10 + x for each listed (y, x), channel-major.
    func expected(_ positions: [[(Int, Int)]]) -> [Int] {
        (0..<3).flatMap { c in positions.flatMap { row in row.map { c * 80 + $0.0 * 10 + $0.1 } } }
    }

    @Test func cropImage() throws {
        _ = try numbered(width: 5, height: 4)
        try run("in: {type: load_image, path: in.png}\ncut: {type: crop_image, image: !ref in, x: 1, y: 2, width: 3, height: 2}\n"
                + "save: {type: save_image, image: !ref cut, path: out.png, metadata: false}")
        let out = try samples("out.png")
        #expect(out.width == 3 && out.height == 2)
        #expect(out.values == expected([[(2, 1), (2, 2), (2, 3)], [(3, 1), (3, 2), (3, 3)]]))
    }

    @Test func padImage() throws {
        _ = try numbered(width: 3, height: 2)
        try run("""
            in: {type: load_image, path: in.png}
            edge: {type: pad_image, image: !ref in, top: 1, left: 2, mode: edge}
            mirror: {type: pad_image, image: !ref in, left: 2, right: 1, mode: reflect}
            flat: {type: pad_image, image: !ref in, bottom: 1, mode: constant, value: 1}
            s1: {type: save_image, image: !ref edge, path: edge.png, metadata: false}
            s2: {type: save_image, image: !ref mirror, path: mirror.png, metadata: false}
            s3: {type: save_image, image: !ref flat, path: flat.png, metadata: false}
            """)
        // edge: rows (0, 0, 1), columns (0, 0, 0, 1, 2).
        let edgeRows = [0, 0, 1], edgeColumns = [0, 0, 0, 1, 2]
        #expect(try samples("edge.png").values == expected(edgeRows.map { y in edgeColumns.map { (y, $0) } }))
        // reflect (numpy): columns (2, 1, 0, 1, 2, 1).
        let mirrorColumns = [2, 1, 0, 1, 2, 1]
        #expect(try samples("mirror.png").values == expected([0, 1].map { y in mirrorColumns.map { (y, $0) } }))
        // constant 1: a white row below.
        let flat = try samples("flat.png")
        #expect(flat.height == 3)
        for c in 0..<3 { #expect(Array(flat.values[(c * 9 + 6)..<(c * 9 + 9)]) == [255, 255, 255]) }
    }

    @Test func convertAndMaskFromLuminance() throws {
        // One pixel (R, G, B) = (200, 100, 50) / 255.
        try ImageFile.write(Image(pixels: Tensor(shape: [3, 1, 1], values: [200 / 255, 100 / 255, 50 / 255])), to: folder.file("px.png"))
        try run("""
            in: {type: load_image, path: px.png}
            gray: {type: convert_image, image: !ref in, to: gray}
            rgba: {type: convert_image, image: !ref in, to: rgba}
            mask: {type: image_to_mask, image: !ref in}
            asimage: {type: mask_to_image, mask: !ref mask}
            s1: {type: save_image, image: !ref gray, path: gray.png, metadata: false}
            s2: {type: save_image, image: !ref rgba, path: rgba.png, metadata: false}
            s3: {type: save_image, image: !ref asimage, path: mask.png, metadata: false}
            """)
        // ITU-R 601 luma, as Pillow's convert("L"): 0.299 R + 0.587 G + 0.114 B = 124.25 -> 124.
        let gray = try samples("gray.png")
        #expect(gray.channels == 1 && gray.values == [124])
        #expect(try samples("rgba.png").values == [200, 100, 50, 255])
        #expect(try samples("mask.png").values.allSatisfy { $0 == 124 })
    }

    @Test func fitToMultiple() throws {
        _ = try numbered(width: 10, height: 7)
        try run("""
            in: {type: load_image, path: in.png}
            crop: {type: fit_to_multiple, image: !ref in, multiple: 4, mode: crop}
            pad: {type: fit_to_multiple, image: !ref in, multiple: 4, mode: pad}
            s1: {type: save_image, image: !ref crop, path: crop.png, metadata: false}
            s2: {type: save_image, image: !ref pad, path: pad.png, metadata: false}
            """)
        // crop: 10x7 -> 8x4, centred: columns 1..8, rows 1..4 (the odd pixel goes to the far side).
        let crop = try samples("crop.png")
        #expect(crop.width == 8 && crop.height == 4)
        #expect(crop.values == expected((1...4).map { y in (1...8).map { (y, $0) } }))
        // pad: 10x7 -> 12x8 with edge pixels, split as (1 left, 1 right) and (0 above, 1 below).
        let pad = try samples("pad.png")
        #expect(pad.width == 12 && pad.height == 8)
        #expect(pad.values == expected([0, 1, 2, 3, 4, 5, 6, 6].map { y in ([0] + Array(0...9) + [9]).map { (y, $0) } }))
    }

    @Test func editMaskAndComposite() throws {
        // A 5x5 mask with one white pixel in the middle.
        var values = [Float](repeating: 0, count: 25)
        values[12] = 1
        try ImageFile.write(Image(pixels: Tensor(shape: [1, 5, 5], values: values)), to: folder.file("dot.png"))
        try ImageFile.write(Image(pixels: Tensor(repeating: 1, shape: [3, 5, 5])), to: folder.file("white.png"))
        try ImageFile.write(Image(pixels: Tensor(zeros: [3, 5, 5])), to: folder.file("black.png"))
        try run("""
            dot: {type: load_mask, path: dot.png}
            grown: {type: edit_mask, mask: !ref dot, grow: 1}
            inverted: {type: edit_mask, mask: !ref dot, invert: true}
            fg: {type: load_image, path: white.png}
            bg: {type: load_image, path: black.png}
            blend: {type: composite, foreground: !ref fg, background: !ref bg, mask: !ref grown}
            g: {type: mask_to_image, mask: !ref grown}
            i: {type: mask_to_image, mask: !ref inverted}
            s1: {type: save_image, image: !ref g, path: grown.png, metadata: false}
            s2: {type: save_image, image: !ref i, path: inverted.png, metadata: false}
            s3: {type: save_image, image: !ref blend, path: blend.png, metadata: false}
            """)
        // Growing by 1 pixel makes the 3x3 square around the dot (a square structuring element).
        let grown = try samples("grown.png").values
        let square = (0..<25).map { i in (1...3).contains(i / 5) && (1...3).contains(i % 5) ? 255 : 0 }
        #expect(Array(grown.prefix(25)) == square)
        #expect(Array(try samples("inverted.png").values.prefix(25)) == values.map { $0 == 1 ? 0 : 255 })
        // White where the grown mask is 1, black elsewhere, in every channel.
        #expect(try samples("blend.png").values == square + square + square)
    }

    @Test func eraseMasked() throws {
        _ = try numbered(width: 2, height: 1)
        try ImageFile.write(Image(pixels: Tensor(shape: [1, 1, 2], values: [1, 0])), to: folder.file("m.png"))
        try run("""
            in: {type: load_image, path: in.png}
            m: {type: load_mask, path: m.png}
            erased: {type: erase_masked, image: !ref in, mask: !ref m}
            s: {type: save_image, image: !ref erased, path: out.png, metadata: false}
            """)
        // The masked pixel becomes mid-gray (0.5 -> 128 in 8 bits); the other keeps its values.
        #expect(try samples("out.png").values == [128, 1, 128, 81, 128, 161])
    }

    @Test func tensorsRoundTripAndNoise() throws {
        // latents 2 everywhere, noise 1 everywhere: DDIM's level at strength 1 of 10 steps is t = 901,
        // so the noisy latent is sqrt(a) x 2 + sqrt(1 - a) x 1 with a = alphas_cumprod[901].
        try SafeTensorsWriter.write(["latent": Tensor(repeating: 2, shape: [1, 4, 2, 2]), "noise": Tensor(repeating: 1, shape: [1, 4, 2, 2])],
                                    to: folder.file("in.safetensors"))
        try run("""
            latent: {type: load_tensor, path: in.safetensors, name: latent}
            noise: {type: load_tensor, path: in.safetensors, name: noise}
            noisy: {type: add_noise, latent: !ref latent, noise: !ref noise, sampler: ddim, steps: 10, strength: 1}
            copy: {type: save_tensor, tensor: !ref latent, path: copy.safetensors, dtype: f16}
            s: {type: save_tensor, tensor: !ref noisy, path: noisy.safetensors, name: x}
            """)
        #expect(try SafeTensorsFile(path: folder.file("copy.safetensors")).tensor("tensor").scalars == Array(repeating: 2, count: 16))
        // alphas_cumprod[901] of SD's scaled-linear schedule, accumulated in double.
        var product = 1.0
        let start = 0.00085.squareRoot(), end = 0.012.squareRoot()
        for i in 0...901 {
            let beta = start + (end - start) * Double(i) / 999
            product *= 1 - beta * beta
        }
        let level = Float(product.squareRoot() * 2 + (1 - product).squareRoot())
        let noisy = try SafeTensorsFile(path: folder.file("noisy.safetensors")).tensor("x").scalars
        #expect(noisy.allSatisfy { abs($0 - level) < 1e-4 }, "\(noisy[0]) vs \(level)")
    }

    @Test func cropToMaskAndPasteBack() throws {
        // A 40x40 gray photo with a masked 4x4 square at (20, 20); the cut-out (padding 4) is made
        // white and pasted back without feathering: white exactly on the mask, the photo elsewhere.
        try ImageFile.write(Image(pixels: Tensor(repeating: 0.2, shape: [3, 40, 40])), to: folder.file("photo.png"))
        var mask = [Float](repeating: 0, count: 1600)
        for y in 20..<24 { for x in 20..<24 { mask[y * 40 + x] = 1 } }
        try ImageFile.write(Image(pixels: Tensor(shape: [1, 40, 40], values: mask)), to: folder.file("mask.png"))
        try ImageFile.write(Image(pixels: Tensor(repeating: 1, shape: [3, 16, 16])), to: folder.file("white.png"))
        try run("""
            photo: {type: load_image, path: photo.png}
            mask: {type: load_mask, path: mask.png}
            cut: {type: crop_to_mask, image: !ref photo, mask: !ref mask, padding: 4, width: 16, height: 16}
            white: {type: load_image, path: white.png}
            back: {type: paste_back, image: !ref white, crop: !ref cut.image, original: !ref photo, mask: !ref mask, feather: 0}
            s1: {type: save_image, image: !ref cut.image, path: cut.png, metadata: false}
            s2: {type: save_image, image: !ref back, path: back.png, metadata: false}
            """)
        #expect(try samples("cut.png").width == 16)
        let back = try samples("back.png").values
        let gray = Int((0.2 * 255).rounded())
        for c in 0..<3 {
            let plane = Array(back[(c * 1600)..<((c + 1) * 1600)])
            #expect(plane == mask.map { $0 == 1 ? 255 : gray })
        }
    }
}
