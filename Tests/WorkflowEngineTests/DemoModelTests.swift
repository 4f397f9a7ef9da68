import Foundation
import ImageIO
import NodeKit
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// The bundled demo model (models/sdflow-demo) through sdflow's own bundled workflows:
/// prompts control the colour, inpainting repaints only the mask, img2img keeps the layout.
@Suite(.serialized) struct DemoModelTests {
    let folder = TemporaryFolder()

    static var repository: String { URL(fileURLWithPath: TestEngine.workflows).deletingLastPathComponent().path }
    static var model: String { repository + "/models/sdflow-demo" }

    /// The shape colours of the demo model's training scenes (tools/demo-model/shapes.py).
    static let colours: [String: [Float]] = [
        "red": [220, 30, 30], "green": [30, 170, 50], "blue": [30, 60, 220], "yellow": [240, 210, 30],
        "purple": [140, 40, 170], "orange": [245, 130, 20],
    ].mapValues { $0.map { $0 / 255 } }

    func run(_ workflow: String, _ overrides: [String: String]) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/" + workflow),
                              registry: TestEngine.registry(), overrides: overrides, currentDirectory: folder.path)
        return Executor(graph: graph, options: Executor.Options(cache: nil)).run()
    }

    /// Pixels that differ from the background (the colour of the image's border) by more than 0.25.
    static func foreground(_ image: Image) -> [Bool] {
        let (w, h) = (image.width, image.height), plane = w * h
        let p = image.pixels.pointer
        var border: [Float] = [0, 0, 0]
        var count: Float = 0
        for y in 0..<h { for x in 0..<w where x < 2 || y < 2 || x >= w - 2 || y >= h - 2 {
            for c in 0..<3 { border[c] += p[c * plane + y * w + x] }
            count += 1
        } }
        border = border.map { $0 / count }
        return (0..<plane).map { i in
            let d = (0..<3).map { c in abs(p[c * plane + i] - border[c]) }.max()!
            return d > 0.25
        }
    }

    /// The named shape colour nearest to the mean colour of `pixels` (where `select` is true).
    static func dominantColour(_ image: Image, where select: [Bool]) -> String? {
        let plane = image.width * image.height, p = image.pixels.pointer
        var mean: [Float] = [0, 0, 0]
        var count: Float = 0
        for i in 0..<plane where select[i] {
            for c in 0..<3 { mean[c] += p[c * plane + i] }
            count += 1
        }
        guard count >= 10 else { return nil }
        mean = mean.map { $0 / count }
        return colours.min { a, b in
            zip(a.value, mean).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) < zip(b.value, mean).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
        }?.key
    }

    @Test func promptsSetTheShapeColour() throws {
        var matches = 0, total = 0
        var confusion: [String: [String: Int]] = [:]
        for (colour, shape) in [("red", "circle"), ("blue", "square"), ("green", "star")] {
            for seed in 0..<20 {
                let output = folder.file("t2i/\(colour)-\(seed).png")
                let report = try run("txt2img.yaml", ["checkpoint": DemoModelTests.model, "seed": String(seed), "output": output,
                                                      "prompt": "a \(colour) \(shape) on a white background"])
                #expect(report.succeeded)
                let image = try ImageFile.read(output)
                let found = DemoModelTests.dominantColour(image, where: DemoModelTests.foreground(image)) ?? "none"
                confusion[colour, default: [:]][found, default: 0] += 1
                if found == colour { matches += 1 }
                total += 1
            }
        }
        let rate = Double(matches) / Double(total)
        print("demo model: the shape has the prompt's colour in \(matches) of \(total) images (\(Int(rate * 100))%); \(confusion)")
        // Chance is 1 in 6 colours; the bundled workflows' defaults (euler_a, 20 steps, CFG 3) must steer it.
        #expect(rate >= 0.8)
    }

    @Test func inpaintingRepaintsOnlyTheMask() throws {
        let output = folder.file("inpaint.png")
        var repainted = 0
        let seeds = 0..<5
        for seed in seeds {
            let report = try run("inpaint.yaml", ["checkpoint": DemoModelTests.model, "seed": String(seed), "output": output,
                                                  "prompt": "a blue circle on a white background", "feather": "0"])
            #expect(report.succeeded)
            let input = try ImageFile.read(DemoModelTests.repository + "/examples/photo.png")
            let mask = try ImageFile.read(DemoModelTests.repository + "/examples/mask.png")
            let result = try ImageFile.read(output)
            let plane = 64 * 64
            let (r, i, m) = (result.pixels.pointer, input.pixels.pointer, mask.pixels.pointer)
            var changedOutside = 0
            for j in 0..<plane where m[j] < 0.5 { for c in 0..<3 where r[c * plane + j] != i[c * plane + j] { changedOutside += 1 } }
            #expect(changedOutside == 0, "seed \(seed): \(changedOutside) samples outside the mask changed")
            let inside = (0..<plane).map { m[$0] >= 0.5 }
            let shape = zip(DemoModelTests.foreground(result), inside).map { $0 && $1 }
            if DemoModelTests.dominantColour(result, where: shape) == "blue" { repainted += 1 }
        }
        print("demo model: inpainting turned the red circle blue for \(repainted) of \(seeds.count) seeds")
        #expect(repainted >= 4)
    }

    @Test func imageToImageAtLowStrengthKeepsTheLayout() throws {
        let input = try ImageFile.read(DemoModelTests.repository + "/examples/photo.png")
        let before = DemoModelTests.foreground(input)
        var overlaps: [Double] = []
        for seed in 0..<5 {
            let output = folder.file("i2i-\(seed).png")
            let report = try run("img2img.yaml", ["checkpoint": DemoModelTests.model, "seed": String(seed), "output": output,
                                                  "strength": "0.3", "prompt": "a red circle on a white background"])
            #expect(report.succeeded)
            let after = DemoModelTests.foreground(try ImageFile.read(output))
            let intersection = zip(before, after).filter { $0 && $1 }.count
            let union = zip(before, after).filter { $0 || $1 }.count
            overlaps.append(Double(intersection) / Double(Swift.max(union, 1)))
        }
        print("demo model: img2img at strength 0.3 keeps the shape's area, IoU \(overlaps.map { String(format: "%.2f", $0) })")
        #expect(overlaps.allSatisfy { $0 >= 0.7 })
    }
}
