import Foundation
import SafeTensors
import TestSupport
import Testing

/// The restricted unpickler on files written by torch.save and on hand-made malicious and corrupt
/// pickles (Tests/Fixtures/pickle, from tools/reference/fixtures_pickle.py).
@Suite struct TorchCheckpointTests {
    let folder = Fixtures.path("pickle")
    let temporary = TemporaryFolder()

    /// Both of torch's layouts give exactly the tensors torch holds: names, dtypes, shapes and bytes
    /// (views made contiguous, shared storages read twice, a Parameter as its tensor, 0-dim and empty ones).
    @Test(arguments: ["zip-f32.pth", "legacy.pth"])
    func readsEveryTensorExactly(name: String) throws {
        let expected = try SafeTensorsFile(path: folder + "/expected.safetensors")
        let file = try SafeTensorsFile.weights(path: folder + "/" + name)
        #expect(file.names == expected.names)
        for key in expected.names {
            let (want, got) = (expected.entries[key]!, try #require(file.entries[key]))
            #expect(got.dtype == want.dtype && got.shape == want.shape, "\(key): \(got.dtype) \(got.shape), expected \(want.dtype) \(want.shape)")
            #expect(Array(try file.rawBytes(key)) == Array(try expected.rawBytes(key)), "\(key): bytes differ")
        }
    }

    /// The other plain values torch.load(weights_only=True) allows (set, Counter, bytearray, a dtype,
    /// a device, torch.Size) are read and dropped: only the weight remains.
    @Test func plainValuesBesideWeightsAreDropped() throws {
        let file = try SafeTensorsFile.weights(path: folder + "/plain-values.pth")
        #expect(file.names == ["w"] && file.entries["w"]?.shape == [2, 3])
    }

    /// What `sdflow convert` writes is a safetensors file with the same tensors.
    @Test func convertedBytesAreASafetensorsFile() throws {
        let file = try SafeTensorsFile.weights(path: folder + "/legacy.pth")
        let path = temporary.file("converted.safetensors")
        try Data(file.contents).write(to: URL(fileURLWithPath: path))
        let reopened = try SafeTensorsFile(path: path)
        #expect(reopened.names == file.names)
        #expect(try reopened.tensor("params_ema.conv.weight").maxAbsDifference(try file.tensor("params_ema.conv.weight")) == 0)
    }

    /// Every malicious pickle is refused with a message naming the file and what it asked for, and
    /// nothing it would run ran.
    @Test(arguments: ["malicious-os-system.pkl", "malicious-builtins-eval.pkl", "malicious-builtins-exec-stack-global.pkl",
                      "malicious-subprocess-popen.pkl", "malicious-rebuild-tensor-fake-storage.pkl", "malicious-builtin-getattr-py2.pkl",
                      "malicious-inst.pkl", "malicious-obj.pkl", "malicious-build-list.pkl", "malicious-build-setstate.pkl",
                      "malicious-os-system-zip.pth"])
    func maliciousPicklesAreRefused(name: String) throws {
        let path = folder + "/" + name
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            // The .pkl files are bare pickles: run them as a legacy file's object would be.
            _ = try TorchCheckpoint.read(path: name.hasSuffix(".pth") ? path : legacyWrapped(data, as: path))
            Issue.record("\(name) was accepted")
        } catch let error as TorchCheckpointError {
            guard case let .refused(where_, reason) = error else { Issue.record("\(name): \(error) is not a refusal"); return }
            #expect(where_.hasSuffix(name) && reason.contains("weights_only"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/sdflow-pwned"))
    }

    /// Corrupt files are errors that name the file, never crashes.
    @Test(arguments: ["corrupt-binunicode-huge.pkl", "corrupt-binunicode8-huge.pkl", "corrupt-missing-storage.pth",
                      "corrupt-storage-too-small.pth", "corrupt-truncated.pth"])
    func corruptFilesAreErrors(name: String) throws {
        let path = folder + "/" + name
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let file = name.hasSuffix(".pth") ? path : try legacyWrapped(data, as: path)
        #expect { _ = try TorchCheckpoint.read(path: file) } throws: { "\($0)".contains(file) }
    }

    /// Every prefix of a good file fails cleanly, in both layouts; so do the fuzzers' findings.
    @Test(arguments: ["legacy.pth", "zip-f32.pth"])
    func truncatedFilesAreErrors(name: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        let path = temporary.file("truncated.pth")
        for length in stride(from: 0, to: data.count, by: Swift.max(1, data.count / 97)) {
            try data.prefix(length).write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self) { _ = try SafeTensorsFile.weights(path: path) }
        }
        #expect(throws: (any Error).self) { _ = try SafeTensorsFile.weights(path: Fixtures.path("fuzz/pickle-zip-memoryfile.pth")) }
    }

    /// A bare pickle as the object of a legacy file (magic, protocol 1001, system info, the object,
    /// no storage keys), so that it reaches the unpickler as a real file's pickle would; written
    /// to a file named after `original`.
    func legacyWrapped(_ pickle: Data, as original: String) throws -> String {
        var data = Data([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E])  // magic number
        data += [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]  // protocol version 1001
        data += [0x80, 0x02, 0x7D, 0x2E]  // system info: {}
        data += pickle
        data += [0x80, 0x02, 0x5D, 0x2E]  // storage keys: []
        let path = temporary.file(URL(fileURLWithPath: original).lastPathComponent)
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }
}
