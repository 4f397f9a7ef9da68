import Foundation
import ImageIO
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// Every value type and parameter kind of the plugin ABI (version 2), end to end through the
/// sdflow binary: the C pack Tests/Fixtures/plugins/kinds.c here, and its Swift twin
/// (Kinds.swift, built as an outside package) in PluginSDKTests.
@Suite(.serialized) struct PluginKindsTests {
    let folder = TemporaryFolder()

    @Test func cPluginPassesEveryKind() throws {
        let plugins = folder.file("plugins-c")
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
        let compiled = try TestEngine.runProcess("/usr/bin/env", ["cc", "-shared", "-fPIC", "-Wall", "-I", PluginTests.header,
                                                                  Fixtures.folder.appendingPathComponent("plugins/kinds.c").path,
                                                                  "-o", plugins + "/kinds_c.so"], in: folder.path)
        #expect(compiled.status == 0, "\(compiled.errors)")
        try PluginKinds.check(suffix: "c", plugins: plugins, in: folder)
    }
}

/// The workflow that uses every kind, and what its results must be.
enum PluginKinds {
    /// Runs the kinds workflow with the nodes `kinds_SUFFIX` and `note_SUFFIX` of the packs in
    /// `plugins`, in `folder`, and checks every output, the cache and the input-file fingerprint.
    static func check(suffix: String, plugins: String, in folder: TemporaryFolder) throws {
        // Inputs: a 16-bit RGB photo with a text chunk, a mask, a tensor, a source file and a data folder.
        var photo = Image(width: 3, height: 2, channels: 3)
        let p = photo.pixels.mutablePointer()
        for i in 0..<18 { p[i] = Float(i * 3000 + 7) / 65535 }
        photo.bitDepth = 16
        try ImageFile.write(photo, to: folder.file("in16.png"), text: [("Comment", "from the test")])
        var mask = Image(width: 3, height: 2, channels: 1)
        mask.pixels.mutablePointer()[4] = 1
        try ImageFile.write(mask, to: folder.file("mask.png"))
        let tensor = Tensor(shape: [1, 2, 3], values: [1, -2, 3, 0.5, 0, 7])
        try SafeTensorsWriter.write(["t": tensor], to: folder.file("t.safetensors"))
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        try "first line\nsecond line\n".write(toFile: folder.file("data/source.txt"), atomically: true, encoding: .utf8)

        let yaml = """
            version: 1
            parameters:
              seed: 11
            nodes:
              photo: {type: load_image, path: in16.png}
              key: {type: load_mask, path: mask.png}
              t: {type: load_tensor, path: t.safetensors}
              first: {type: kinds_\(suffix), image: !ref photo, mask: !ref key, latent: !ref t, conditioning: !ref t, tensor: !ref t,
                      count: 5, amount: 0.25, label: "a b", flag: true, mode: fast, seed: !param seed,
                      source: data/source.txt, folder: data, either: data/source.txt}
              second: {type: kinds_\(suffix), image: !ref first.image, number: !ref first.number, text: !ref first.text,
                       source: data/source.txt, folder: data, either: data}
              save: {type: save_image, image: !ref first.image, path: out/image.png, metadata: false}
              mask_image: {type: mask_to_image, mask: !ref first.mask}
              save_mask: {type: save_image, image: !ref mask_image, path: out/mask.png, metadata: false}
              save_latent: {type: save_tensor, tensor: !ref first.latent, path: out/latent.safetensors}
              save_conditioning: {type: save_tensor, tensor: !ref first.conditioning, path: out/conditioning.safetensors}
              save_tensor: {type: save_tensor, tensor: !ref first.tensor, path: out/tensor.safetensors}
              note: {type: note_\(suffix), text: !ref second.text, number: !ref second.number, path: out/note.txt}
            """
        try yaml.write(toFile: folder.file("kinds.yaml"), atomically: true, encoding: .utf8)
        func run(seed: String) throws -> [String: String] {
            let result = try TestEngine.run(["run", "kinds.yaml", "--plugins", plugins, "--cache-dir", folder.file("cache"), "--summary", "-",
                                             "--set", "seed=" + seed], in: folder.path)
            #expect(result.status == 0, "\(result.errors)")
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            let nodes = summary["nodes"] as? [[String: Any]] ?? []
            return Dictionary(uniqueKeysWithValues: nodes.map { ($0["name"] as! String, $0["status"] as? String ?? "") })
        }
        let first = try run(seed: "random")
        #expect(first["first"] == "ran" && first["note"] == "ran", "\(first)")

        // Images keep their bit depth and pixels (16-bit exact) across the ABI both ways.
        let image = try ImageFile.read(folder.file("out/image.png"))
        #expect(image.bitDepth == 16)
        #expect(zip(image.pixels.scalars, photo.pixels.scalars).allSatisfy { abs($0 - $1) < 0.5 / 65535 })
        let inverted = try ImageFile.read(folder.file("out/mask.png"))
        #expect(inverted.pixels.scalars == [1, 1, 1, 1, 0, 1])
        for name in ["latent", "conditioning", "tensor"] {
            let saved = try SafeTensorsFile(path: folder.file("out/\(name).safetensors"))
            let values = try saved.tensor(#require(saved.names.first)).scalars
            #expect(values == tensor.scalars.map { 2 * $0 }, "\(name)")
        }

        // Parameters of every kind arrive as sdflow resolved them: the random seed drawn, paths
        // made absolute against the workflow's folder; metadata (load_image adds sdflow:source) and
        // bit depth of the input images.
        let note = try String(contentsOfFile: folder.file("out/note.txt"), encoding: .utf8)
        let data = URL(fileURLWithPath: folder.file("data")).standardizedFileURL.path
        let pattern = #"^\[count=5;amount=0\.25;label=a b;flag=true;mode=fast;seed=(\d+);source=first line;folder=DATA;either=DATA/source\.txt\]\{Comment=from the test\|sdflow:source=PHOTO\}@16\[count=3;amount=0\.5;label=hi;flag=false;mode=exact;seed=7;source=first line;folder=DATA;either=DATA\]\{Comment=from the test\|kinds=count=5;amount=0\.25;label=a b;flag=true;mode=fast;seed=\1;source=first line;folder=DATA;either=DATA/source\.txt\|sdflow:source=PHOTO\}@16\n8\n$"#
            .replacingOccurrences(of: "DATA", with: NSRegularExpression.escapedPattern(for: data))
            .replacingOccurrences(of: "PHOTO", with: NSRegularExpression.escapedPattern(for: folder.file("in16.png")))
        #expect(note.range(of: pattern, options: .regularExpression) != nil, "\(note)")

        // Cached like built-in nodes; the node with an output path is an output node and runs each time.
        let seed = try #require(note.range(of: #"seed=\d+"#, options: .regularExpression).map { String(note[$0].dropFirst(5)) })
        let again = try run(seed: seed)
        #expect(again["first"] == "disk-hit" && again["second"] == "disk-hit" && again["note"] == "ran", "\(again)")

        // An input file is keyed by its content: changing it recomputes the nodes that read it.
        try "another first line\n".write(toFile: folder.file("data/source.txt"), atomically: true, encoding: .utf8)
        let changed = try run(seed: seed)
        #expect(changed["first"] == "ran" && changed["second"] == "ran", "\(changed)")
        #expect(try String(contentsOfFile: folder.file("out/note.txt"), encoding: .utf8).contains("source=another first line"))
    }
}
