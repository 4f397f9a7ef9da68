import Foundation
import SafeTensors
import TensorCore

/// A textual-inversion embedding: vectors that stand for a word in prompts.
public struct TextualInversion: Sendable {
    /// The name prompts use: the file name without extension.
    public let name: String
    public let path: String
    /// (vectors, width).
    public let vectors: Tensor

    /// Reads an embedding (`.safetensors`, or a pickled `.pt`/`.bin` read without running it):
    /// A1111's `emb_params` or `string_to_param.*`, or diffusers' `learned_embeds` (one tensor named
    /// after its token); single- or multi-vector.
    public init(path: String) throws {
        func fail(_ message: String) -> LoadError { LoadError(path: path, message: message) }
        self.path = path
        name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let file = try SafeTensorsFile.weights(path: path)
        if file.entries["clip_g"] != nil || file.entries["clip_l"] != nil {
            throw fail("it has clip_l/clip_g vectors: an SDXL embedding, and sdflow runs SD 1.x")
        }
        let key = ["emb_params", "string_to_param.*"].first { file.entries[$0] != nil } ?? (file.names.count == 1 ? file.names[0] : nil)
        guard let key else {
            throw fail("expected one tensor (emb_params, string_to_param.* or a token's learned_embeds), found \(file.names.count): "
                       + file.names.prefix(5).joined(separator: ", "))
        }
        var t = try file.tensor(key)
        if t.rank == 1 { t = t.reshaped([1, t.count]) }
        guard t.rank == 2, t.shape[0] > 0, t.shape[0] <= 75 else {
            throw fail("'\(key)' has shape \(t.shape); expected (vectors, width) with 1 to 75 vectors")
        }
        vectors = t
    }

    /// Errors reading an embedding; each names the file.
    public struct LoadError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "embedding \(path): \(message)" }
    }
}

/// The embeddings a prompt may use, by name: every `.safetensors`, `.pt` and `.bin` file of a
/// folder. A file that cannot be read is listed too, so that using it gives the reason.
public struct EmbeddingLibrary: Sendable {
    /// Loaded embeddings by name.
    public private(set) var embeddings: [String: TextualInversion] = [:]
    /// Names that could not be read, with the error (reported when a prompt uses them).
    public private(set) var unreadable: [String: String] = [:]

    public init() {}

    /// The embeddings in `folder` (not recursive).
    public init(folder: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        for file in names where [".safetensors", ".pt", ".bin"].contains(where: file.hasSuffix) {
            let path = folder + "/" + file
            do {
                let embedding = try TextualInversion(path: path)
                embeddings[embedding.name] = embedding
            } catch {
                unreadable[URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent] = "\(error)"
            }
        }
    }

    public var isEmpty: Bool { embeddings.isEmpty && unreadable.isEmpty }
}
