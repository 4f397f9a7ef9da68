import Foundation
import ImageIO
import NodeKit
import SafeTensors
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// Cache entries are trusted only when everything in them checks out: the key they record, the
/// stored values and metadata, and the tensors.
@Suite struct ResultCacheTests {
    let folder = TemporaryFolder()

    func entryPath(_ key: String) -> String { folder.file("cache/v1/\(key.prefix(2))/\(key).safetensors") }

    /// Keys as the executor makes them: 64 hex digits.
    func key(_ n: Int) -> String { String(repeating: String(n), count: 64) }

    func image(_ value: Float) -> Value {
        var image = Image(width: 4, height: 4, channels: 3, value: value)
        image.metadata[ImageMetadataKey.source] = "/photos/a.png"
        return .image(image)
    }

    @Test func entriesRoundTrip() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        try cache.write(image(0.25), key: key(1))
        guard case .hit(.image(let back)) = cache.read(key(1)) else { Issue.record("no hit"); return }
        #expect(back.pixels.scalars.allSatisfy { $0 == 0.25 } && back.metadata[ImageMetadataKey.source] == "/photos/a.png")
        try cache.write(.number(3.5), key: key(2))
        guard case .hit(.number(3.5)) = cache.read(key(2)) else { Issue.record("number not stored"); return }
    }

    @Test func swappedEntriesAreNotTrusted() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        try cache.write(image(0.25), key: key(1))
        try cache.write(image(0.75), key: key(2))
        let one = try Data(contentsOf: URL(fileURLWithPath: entryPath(key(1))))
        try Data(contentsOf: URL(fileURLWithPath: entryPath(key(2)))).write(to: URL(fileURLWithPath: entryPath(key(1))))
        try one.write(to: URL(fileURLWithPath: entryPath(key(2))))
        guard case .corrupt(let why) = cache.read(key(1)) else { Issue.record("a swapped entry was trusted"); return }
        #expect(why.contains("another key"))
        #expect(!FileManager.default.fileExists(atPath: entryPath(key(1))), "the misplaced entry is removed")
    }

    @Test func editedMetadataIsNotTrusted() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        try cache.write(image(0.5), key: key(3))
        try cache.write(.text("a red circle"), key: key(4))
        // Rewrite each entry with one metadata value changed and everything else (checksum too) kept.
        for (k, field, value) in [(key(3), "sdflow.metadata", #"{"sdflow:source":"/elsewhere/b.png"}"#), (key(4), "sdflow.value", "a blue circle")] {
            let file = try SafeTensorsFile(path: entryPath(k))
            var tensors: [String: Tensor] = [:]
            for name in file.names { tensors[name] = try file.tensor(name).copied() }
            var metadata = file.metadata
            metadata[field] = value
            try SafeTensorsWriter.write(tensors, metadata: metadata, to: entryPath(k) + ".new")
            try FileManager.default.removeItem(atPath: entryPath(k))
            try FileManager.default.moveItem(atPath: entryPath(k) + ".new", toPath: entryPath(k))
            guard case .corrupt(let why) = cache.read(k) else { Issue.record("edited \(field) was trusted"); continue }
            #expect(why.contains("checksum"))
        }
    }

    @Test func entriesOfOlderVersionsAreQuietlyRecomputed() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        try FileManager.default.createDirectory(atPath: (entryPath(key(5)) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(["value": Tensor(zeros: [2])], metadata: ["sdflow.type": "tensor", "sdflow.checksum": "old"], to: entryPath(key(5)))
        guard case .miss = cache.read(key(5)) else { Issue.record("an entry without its key was not a miss"); return }
    }
}
