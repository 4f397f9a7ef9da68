import Foundation
import ImageIO
import TestSupport
import Testing

/// What `sdflow run` tells its user, through the built binary on the tiny model: the `--summary`
/// JSON (per node status, time and computed count; seeds; batch items with their errors) and the
/// plain progress lines of the terminal reporter when standard error is not a terminal.
@Suite(.serialized) struct ReportingTests {
    let folder = TemporaryFolder()

    /// Runs the binary in the test's folder; returns its exit status, standard output and standard error.
    func sdflow(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        try TestEngine.run(arguments, in: folder.path)
    }

    func txt2img(_ extra: [String]) -> [String] {
        [TestEngine.workflows + "/txt2img.yaml", "--set", "checkpoint=" + TinyModel.folder, "--set", "steps=3",
         "--set", "output=" + folder.file("out/t-{seed}.png"), "--cache-dir", folder.file("cache")] + extra
    }

    func summary(_ text: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func nodes(_ summary: [String: Any]) -> [String: [String: Any]] {
        Dictionary(uniqueKeysWithValues: (summary["nodes"] as? [[String: Any]] ?? []).map { ($0["name"] as! String, $0) })
    }

    @Test func summaryJSON() throws {
        let cold = try sdflow(txt2img(["--summary", "-", "--set", "seed=random"]))
        #expect(cold.status == 0, "\(cold.errors)")
        let first = try summary(cold.output)
        let coldNodes = nodes(first)
        #expect(Set(coldNodes.keys) == ["model", "positive", "negative", "blank", "generated", "image", "save"])
        for (name, node) in coldNodes {
            #expect(node["status"] as? String == "ran" && node["computed"] as? Int == 1, "\(name): \(node)")
            #expect((node["seconds"] as? Double ?? -1) >= 0 && (node["errors"] as? [String])?.isEmpty == true)
        }
        // The random seed is reported, and it is the one the image was made with.
        let seeds = try #require(first["seeds"] as? [String: Any])
        let seed = try #require(seeds.values.first.map { "\($0)" })
        let image = try ImageFile.read(folder.file("out/t-\(seed).png"))
        #expect(image.metadata["parameters"]?.contains("Seed: \(seed)") == true)

        // Another cfg: the prompts come from the disk cache, the sampling runs again.
        let warm = try summary(try sdflow(txt2img(["--summary", "-", "--set", "seed=\(seed)", "--set", "cfg=2"])).output)
        let warmNodes = nodes(warm)
        #expect(warmNodes["positive"]?["status"] as? String == "disk-hit" && warmNodes["positive"]?["computed"] as? Int == 0)
        #expect(warmNodes["generated"]?["status"] as? String == "ran")
    }

    @Test func summaryOfABatchWithABadFile() throws {
        let photos = folder.file("photos")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        try ImageFile.write(Image(width: 16, height: 16, channels: 3), to: photos + "/good.png")
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: photos + "/bad.png"))
        let run = try sdflow([TestEngine.workflows + "/resize-folder.yaml", "--set", "input=" + photos, "--set", "output=" + folder.file("out/{stem}.png"),
                              "--set", "width=8", "--set", "height=8", "--no-cache", "--summary", folder.file("summary.json")])
        #expect(run.status == 1)  // an item failed
        let report = try summary(String(contentsOfFile: folder.file("summary.json"), encoding: .utf8))
        let items = try #require(report["items"] as? [[String: Any]])
        #expect(items.count == 2)
        let bad = try #require(items.first { ($0["status"] as? String) == "failed" })
        #expect((bad["errors"] as? [String])?.joined().contains("bad.png") == true, "\(bad)")
        let good = try #require(items.first { ($0["status"] as? String) == "done" })
        #expect((good["outputs"] as? [String])?.first?.hasSuffix("out/good.png") == true, "\(good)")
    }

    @Test func plainProgressLines() throws {
        let cold = try sdflow(txt2img(["--set", "seed=7"]))
        #expect(cold.status == 0)
        let lines = cold.errors.split(separator: "\n").map(String.init)
        #expect(lines.contains("▸ model (load_checkpoint)"))
        #expect(lines.contains { $0.hasPrefix("✓ generated (denoise): done ") })
        #expect(lines.contains { $0.hasPrefix("  generated: step 1/3, ETA") })
        #expect(lines.contains { $0.hasPrefix("  generated: step 3/3") })
        #expect(lines.last?.hasPrefix("finished in ") == true && lines.last?.hasSuffix(": 7 of 7 nodes computed") == true, "\(lines.last ?? "")")

        let warm = try sdflow(txt2img(["--set", "seed=7"]))
        let warmLines = warm.errors.split(separator: "\n").map(String.init)
        #expect(warmLines.contains { $0.contains(" positive (clip_encode): cached ") }, "\(warmLines)")

        let failing = try sdflow([TestEngine.workflows + "/txt2img.yaml", "--set", "checkpoint=" + folder.file("missing"), "--no-cache"])
        #expect(failing.status == 2)
        #expect(failing.errors.contains("missing"), "\(failing.errors)")
    }
}
