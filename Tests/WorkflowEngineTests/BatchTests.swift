import Foundation
import ImageIO
import NodeKit
import SafeTensors
import TestSupport
import Testing
import WorkflowEngine

/// Folder batches: item by item, no two outputs in one file, shards, resuming, stopping.
@Suite(.serialized) struct BatchTests {
    let folder = TemporaryFolder()

    /// `count` small, different PNGs in `name/`, named `img_000.png`, ...
    func makeFolder(_ name: String = "in", count: Int, size: Int = 24) throws -> String {
        let path = folder.file(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for i in 0..<count {
            var image = Image(width: size, height: size, channels: 3)
            let p = image.pixels.mutablePointer()
            for j in 0..<(3 * size * size) { p[j] = Float((j * 7 + i * 13) % 255) / 255 }
            try ImageFile.write(image, to: path + String(format: "/img_%03d.png", i))
        }
        return path
    }

    /// Runs resize-folder over `input` into `output` (a path pattern).
    func resize(_ input: String, _ output: String, cache: ResultCache?, shard: Shard? = nil, reporter: RunReporter? = nil,
                cancellation: Cancellation = Cancellation()) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.load(path: TestEngine.workflows + "/resize-folder.yaml"), registry: TestEngine.registry(),
                              overrides: ["input": input, "output": output, "width": "16", "height": "16"], currentDirectory: folder.path)
        var options = Executor.Options(cache: cache, reporter: reporter, shard: shard)
        options.cancellation = cancellation
        return Executor(graph: graph, options: options).run()
    }

    func bytes(of folder: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            result[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        }
        return result
    }

    @Test func eachItemGoesThroughTheWholeGraphBeforeTheNext() throws {
        let input = try makeFolder(count: 5)
        let out = folder.file("out")
        let events = Events()
        // When an item starts, every earlier item's output is already written.
        events.onItemStarted = { item in
            for earlier in 0..<item.index {
                #expect(FileManager.default.fileExists(atPath: out + String(format: "/img_%03d.png", earlier)),
                        "item \(item.index) started before item \(earlier) was saved")
            }
        }
        let report = try resize(input, out + "/{stem}.png", cache: nil, reporter: events)
        #expect(report.succeeded)
        // Item-major: resize and save alternate, item by item.
        let started = events.log.filter { $0.hasPrefix("node ") }
        #expect(started == (0..<5).flatMap { ["node resized \($0)", "node save \($0)"] })
        #expect(report.items.map(\.status) == Array(repeating: .done, count: 5))
        #expect(report.items.map(\.outputs) == (0..<5).map { [out + String(format: "/img_%03d.png", $0)] })
        #expect(report.batchSize == 5)
    }

    @Test func outputsThatWouldOverwriteEachOtherAreRefusedBeforeAnythingRuns() throws {
        let input = try makeFolder(count: 3)
        try FileManager.default.copyItem(atPath: input + "/img_001.png", toPath: input + "/img_001.jpg")
        let out = folder.file("out")
        let report = try resize(input, out + "/{stem}.png", cache: nil)
        #expect(!report.succeeded)
        #expect(report.refused.count == 1)
        #expect(report.refused.first?.contains("img_001.jpg") == true && report.refused.first?.contains("img_001.png") == true,
                "\(report.refused)")
        #expect(!FileManager.default.fileExists(atPath: out), "something was written")
        // With {index} every item has its own file.
        let unique = try resize(input, out + "/{index:03}-{stem}.png", cache: nil)
        #expect(unique.succeeded)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).count == 4)
    }

    @Test func anOutputFolderThatIsAFileIsRefusedBeforeAnythingRuns() throws {
        let input = try makeFolder(count: 2)
        let blocker = folder.file("out")
        try Data("a file, not a folder".utf8).write(to: URL(fileURLWithPath: blocker))
        let report = try resize(input, blocker + "/sub/{stem}.png", cache: nil)
        #expect(report.refused.count == 2 && report.refused.allSatisfy { $0.contains("\(blocker) is a file, not a folder") }, "\(report.refused)")
        #expect(report.items.isEmpty)
    }

    @Test func imagesTooLargeToReadBackAreNeitherMadeNorWritten() throws {
        #expect(ImageFile.sizeProblem(width: 13377, height: 13377) == nil)  // 178,944,129 pixels: within Pillow's limit
        #expect(ImageFile.sizeProblem(width: 16384, height: 16384)?.contains("178956970") == true)
        #expect(ImageFile.sizeProblem(width: Int.max, height: 2) != nil)
        let input = try makeFolder(count: 1)
        let cache = try ResultCache(folder: folder.file("cache"))
        // resize-folder fits into the box; exact mode asks for all 16384x16384 pixels.
        let bundled = try Workflow.load(path: TestEngine.workflows + "/resize-folder.yaml")
        let workflow = try Workflow.parse(bundled.text.replacingOccurrences(of: "mode: fit", with: "mode: exact"), path: bundled.path)
        let exact = try Graph(workflow: workflow, registry: TestEngine.registry(),
                              overrides: ["input": input, "output": folder.file("out/{stem}.png"), "width": "16384", "height": "16384"],
                              currentDirectory: folder.path)
        let report = Executor(graph: exact, options: .init(cache: cache)).run()
        #expect(report.items.first?.status == .failed)
        #expect(report.items.first?.errors.first?.contains("16384x16384 is more than the 178956970 pixels") == true, "\(report.items)")
        #expect(cache.entries().isEmpty, "an entry of the too-large image was written")
        #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
    }

    @Test func shardsSplitTheBatchAndTogetherWriteWhatOneRunWrites() throws {
        let input = try makeFolder(count: 12)
        // One process, then three shards sharing the same output pattern (recorded in the PNGs) and a cache.
        let shared = folder.file("shared")
        #expect(try resize(input, shared + "/{stem}.png", cache: nil).succeeded)
        let single = try bytes(of: shared)
        try FileManager.default.removeItem(atPath: shared)
        let cache = try ResultCache(folder: folder.file("cache"))
        var seen: [String] = []
        for index in 0..<3 {
            let report = try resize(input, shared + "/{stem}.png", cache: cache, shard: try Shard(index: index, count: 3))
            #expect(report.succeeded && report.shard == "\(index)/3" && report.batchSize == 12)
            #expect(report.items.allSatisfy { Shard.of($0.source, count: 3) == index })
            seen += report.items.map(\.source)
        }
        #expect(seen.sorted() == (0..<12).map { String(format: "img_%03d.png", $0) }, "every item exactly once")
        #expect(try bytes(of: shared) == single, "shards wrote other bytes than one run")

        // Assignment is by name: adding files moves none of the others.
        let before = seen.map { Shard.of($0, count: 3) }
        _ = try makeFolder(count: 20)
        #expect(seen.map { Shard.of($0, count: 3) } == before)
        #expect(throws: (any Error).self) { try Shard(parsing: "3/3") }
        #expect(throws: (any Error).self) { try Shard(parsing: "1") }
    }

    @Test func aRerunSkipsWhatIsDoneAndLeavesTheFilesAlone() throws {
        let input = try makeFolder(count: 4)
        let out = folder.file("out"), cache = try ResultCache(folder: folder.file("cache"))
        #expect(try resize(input, out + "/{stem}.png", cache: cache).succeeded)
        let modified = try FileManager.default.attributesOfItem(atPath: out + "/img_002.png")[.modificationDate] as? Date
        try FileManager.default.removeItem(atPath: out + "/img_003.png")

        let again = try resize(input, out + "/{stem}.png", cache: cache)
        #expect(again.succeeded)
        #expect(again.items.map(\.status) == [.cached, .cached, .cached, .done])
        #expect(again.items.map(\.computed) == [0, 0, 0, 1], "only the missing output is written again (from the cached resize)")
        #expect(try FileManager.default.attributesOfItem(atPath: out + "/img_002.png")[.modificationDate] as? Date == modified)
        #expect(FileManager.default.fileExists(atPath: out + "/img_003.png"))

        // Finished items are known from their outputs' keys alone: even without the cache nothing is computed again.
        let withoutCache = try resize(input, out + "/{stem}.png", cache: try ResultCache(folder: folder.file("empty-cache")))
        #expect(withoutCache.items.map(\.status) == [.cached, .cached, .cached, .cached])
        #expect(withoutCache.items.map(\.computed) == [0, 0, 0, 0])
        #expect(withoutCache.nodes.first { $0.name == "resized" }?.computed == 0)
    }

    @Test func aBadFileFailsItsItemAndTheOthersGoOn() throws {
        let input = try makeFolder(count: 3)
        try Data("not a PNG".utf8).write(to: URL(fileURLWithPath: input + "/img_001.png"))
        let report = try resize(input, folder.file("out/{stem}.png"), cache: nil)
        #expect(!report.succeeded)
        #expect(report.items.map(\.status) == [.done, .failed, .done])
        #expect(report.items[1].errors.first?.contains("img_001.png") == true, "\(report.items[1].errors)")
        #expect(report.nodes.first { $0.name == "photos" }?.status == .partial)
        #expect(report.nodes.first { $0.name == "save" }?.status == .partial)
    }

    @Test func stoppingAfterAnItemKeepsWhatIsDone() throws {
        let input = try makeFolder(count: 5)
        let out = folder.file("out")
        let cancellation = Cancellation()
        let events = Events()
        events.onItemStarted = { item in
            #expect(cancellation.isInBatch)
            if item.index == 1 { cancellation.cancelAfterItem() }  // as the first Ctrl-C in a batch
        }
        let report = try resize(input, out + "/{stem}.png", cache: nil, reporter: events, cancellation: cancellation)
        #expect(report.cancelled)
        #expect(report.items.map(\.status) == [.done, .done])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["img_000.png", "img_001.png"])
    }

    @Test func masksPairWithImagesByFileName() throws {
        let images = try makeFolder("images", count: 3)
        let masks = try makeFolder("masks", count: 3)
        // The masks folder lists the same stems in another order of extensions.
        try FileManager.default.moveItem(atPath: masks + "/img_001.png", toPath: masks + "/img_001.PNG")
        let workflow = folder.file("pairs.yaml")
        try """
        version: 1
        nodes:
          photos: {type: load_images, folder: \(images), mask_folder: \(masks)}
          kept: {type: composite, background: !ref photos.images, foreground: !ref photos.images, mask: !ref photos.masks}
          save: {type: save_image, image: !ref kept, path: "\(folder.file("out"))/{stem}.png"}
        """.write(toFile: workflow, atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: workflow), registry: TestEngine.registry())
        let report = Executor(graph: graph, options: .init()).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors)) \(report.refused)")
        #expect(report.items.map(\.stem) == ["img_000", "img_001", "img_002"])
    }

    /// Runs a workflow written in `text` (in the test folder) and returns its report.
    func runText(_ text: String, name: String, cache: ResultCache? = nil) throws -> RunReport {
        let path = folder.file(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: path), registry: TestEngine.registry())
        return Executor(graph: graph, options: .init(cache: cache)).run()
    }

    /// save_tensor names each item's file as save_image does; load_tensor reads them back per item,
    /// paired with load_images by file name, whatever order the files are listed in.
    @Test func tensorsAreSavedAndLoadedPerItem() throws {
        let images = try makeFolder("photos", count: 3, size: 16)
        let latents = folder.file("latents"), model = Fixtures.path("tiny-sd")
        let save = """
            version: 1
            nodes:
              model: {type: load_checkpoint, path: \(model)}
              photos: {type: load_images, folder: \(images)}
              encoded: {type: vae_encode, vae: !ref model.vae, image: !ref photos.images}
              save: {type: save_tensor, tensor: !ref encoded, path: "\(latents)/{stem}.safetensors"}
            """
        let cache = try ResultCache(folder: folder.file("cache"))
        let first = try runText(save, name: "save.yaml", cache: cache)
        #expect(first.succeeded, "\(first.nodes.flatMap(\.errors)) \(first.refused)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: latents).sorted()
                == ["img_000.safetensors", "img_001.safetensors", "img_002.safetensors"])
        #expect(first.items.map(\.outputs) == (0..<3).map { [latents + String(format: "/img_%03d.safetensors", $0)] })
        // The same run again: every file holds its item's result already and is left alone.
        let modified = try FileManager.default.attributesOfItem(atPath: latents + "/img_001.safetensors")[.modificationDate] as? Date
        let again = try runText(save, name: "save.yaml", cache: cache)
        #expect(again.items.map(\.status) == [.cached, .cached, .cached])
        #expect(try FileManager.default.attributesOfItem(atPath: latents + "/img_001.safetensors")[.modificationDate] as? Date == modified)
        // One file for every item is refused before anything runs.
        let clash = try runText(save.replacingOccurrences(of: "/{stem}.safetensors", with: "/all.safetensors"), name: "clash.yaml")
        #expect(!clash.refused.isEmpty && clash.refused.allSatisfy { $0.contains("would both write \(latents)/all.safetensors") }, "\(clash.refused)")
        #expect(!FileManager.default.fileExists(atPath: latents + "/all.safetensors"))

        // Read back per item: each item gets its own file (img_002's latent swapped with img_000's
        // shows that the pairing is by name, not by the files' order).
        try FileManager.default.moveItem(atPath: latents + "/img_000.safetensors", toPath: latents + "/swap")
        try FileManager.default.moveItem(atPath: latents + "/img_002.safetensors", toPath: latents + "/img_000.safetensors")
        try FileManager.default.moveItem(atPath: latents + "/swap", toPath: latents + "/img_002.safetensors")
        let out = folder.file("out")
        let load = """
            version: 1
            nodes:
              photos: {type: load_images, folder: \(images)}
              latent: {type: load_tensor, path: "\(latents)/{stem}.safetensors"}
              save: {type: save_tensor, tensor: !ref latent, path: "\(out)/{stem}.safetensors"}
              copy: {type: save_image, image: !ref photos.images, path: "\(out)/{stem}.png"}
            """
        let loaded = try runText(load, name: "load.yaml", cache: cache)
        #expect(loaded.succeeded, "\(loaded.nodes.flatMap(\.errors)) \(loaded.refused)")
        for (stem, source) in [("img_000", "img_000"), ("img_001", "img_001"), ("img_002", "img_002")] {
            let written = try SafeTensorsFile(path: "\(out)/\(stem).safetensors").tensor("tensor")
            let expected = try SafeTensorsFile(path: "\(latents)/\(source).safetensors").tensor("tensor")
            #expect(written.shape == expected.shape && written.scalars == expected.scalars, "\(stem)")
        }
        // A changed file is read again (the key follows the file's content), and a missing one fails its item only.
        try FileManager.default.copyItem(atPath: latents + "/img_001.safetensors", toPath: folder.file("img_001.keep"))
        try FileManager.default.removeItem(atPath: latents + "/img_001.safetensors")
        try FileManager.default.copyItem(atPath: latents + "/img_002.safetensors", toPath: latents + "/img_000.safetensors.tmp")
        try FileManager.default.removeItem(atPath: latents + "/img_000.safetensors")
        try FileManager.default.moveItem(atPath: latents + "/img_000.safetensors.tmp", toPath: latents + "/img_000.safetensors")
        let partial = try runText(load, name: "load.yaml", cache: cache)
        #expect(partial.items.map(\.status) == [.done, .failed, .cached], "\(partial.items)")
        #expect(partial.items[1].errors.joined().contains("no such file or folder: \(latents)/img_001.safetensors"), "\(partial.items[1].errors)")
        #expect(try SafeTensorsFile(path: "\(out)/img_000.safetensors").tensor("tensor").scalars
                == SafeTensorsFile(path: "\(latents)/img_002.safetensors").tensor("tensor").scalars)
        // Without a batch, a per-item path is refused.
        let single = try runText("""
            version: 1
            nodes:
              latent: {type: load_tensor, path: "\(latents)/{stem}.safetensors"}
              save: {type: save_tensor, tensor: !ref latent, path: "\(out)/one.safetensors"}
            """, name: "single.yaml")
        #expect(single.refused.first?.contains("reads one file per batch item") == true, "\(single.refused)")
        // An unknown placeholder is a workflow error.
        #expect(throws: WorkflowErrors.self) {
            _ = try Graph(workflow: Workflow.parse("""
                version: 1
                nodes:
                  photos: {type: load_images, folder: \(images)}
                  latent: {type: load_tensor, path: "\(latents)/{seed}.safetensors"}
                  save: {type: save_tensor, tensor: !ref latent, path: "\(out)/{stem}.safetensors"}
                """, path: folder.file("bad.yaml")), registry: TestEngine.registry())
        }
    }
}

/// Collects a run's events (and lets a test act when an item starts).
final class Events: RunReporter {
    var log: [String] = []
    var onItemStarted: (BatchItem) -> Void = { _ in }

    func nodeStarted(_ name: String, type: String, item: BatchItem?, itemCount: Int?) {
        log.append("node \(name)" + (item.map { " \($0.index)" } ?? ""))
    }
    func nodeProgress(_ name: String, completed: Int, total: Int) {}
    func nodeFinished(_ report: NodeReport) { log.append("finished \(report.name)") }
    func itemStarted(_ item: BatchItem, position: Int, count: Int) {
        log.append("item \(item.index)")
        onItemStarted(item)
    }
    func itemFinished(_ report: ItemReport, position: Int, count: Int) { log.append("item done \(report.index)") }
    func warning(_ message: String) { log.append("warning \(message)") }
}
