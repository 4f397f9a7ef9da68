import Crypto
import Foundation
import ImageIO
import NodeKit
import SafeTensors
import TensorCore

/// Node results kept across runs: one `.safetensors` file per result under
/// `<folder>/v1/<first two hex digits>/<key>.safetensors`.
///
/// - Images, masks, latents, conditioning, tensors, numbers and text are stored (images as
///   float32 pixels, so a cached result is bit-identical to a fresh one); models are not.
/// - Each file records its own key and carries a SHA-256 over that key, its stored values and
///   metadata and its tensors, verified when read: a damaged, truncated, edited or misplaced
///   entry is deleted and the result recomputed, never trusted. (Entries of sdflow versions that
///   did not record their key are quietly dropped.)
/// - Files are written atomically (temporary file + rename), so a killed run or a second
///   sdflow process sharing the folder never sees half an entry.
/// - Past the size budget the least recently used entries are deleted (hits refresh an
///   entry's modification time).
public final class ResultCache: Sendable {
    public let folder: String
    /// The size budget in bytes.
    public let budget: Int
    private let root: String
    private let lock = NSLock()

    /// The default folder: `$XDG_CACHE_HOME/sdflow`, else `~/.cache/sdflow`.
    public static var defaultFolder: String {
        let environment = ProcessInfo.processInfo.environment
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/sdflow" }
        return NSHomeDirectory() + "/.cache/sdflow"
    }

    /// The default budget: 20 GB.
    public static let defaultBudget = 20 << 30

    public init(folder: String = ResultCache.defaultFolder, budget: Int = ResultCache.defaultBudget) throws {
        self.folder = folder
        self.budget = budget
        root = folder + "/v1"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    private func path(_ key: String) -> String { "\(root)/\(key.prefix(2))/\(key).safetensors" }

    // MARK: - Reading and writing

    /// What a read found.
    public enum Lookup {
        case hit(Value)
        case miss
        /// There was an entry but it was damaged; it has been removed.
        case corrupt(String)
    }

    /// The stored result under `key`.
    public func read(_ key: String) -> Lookup {
        let file = path(key)
        guard FileManager.default.fileExists(atPath: file) else { return .miss }
        do {
            let entry = try SafeTensorsFile(path: file)
            if entry.metadata[ResultCache.keyField] == nil {
                try? FileManager.default.removeItem(atPath: file)  // written by an older sdflow: recompute quietly
                return .miss
            }
            guard entry.metadata[ResultCache.keyField] == key else {
                throw DecodeError(description: "the entry records another key (\(entry.metadata[ResultCache.keyField]!.prefix(12))…)")
            }
            let value = try ResultCache.decode(entry)
            // Refresh the modification time: eviction removes the least recently used first.
            _ = utimes(file, nil)
            return .hit(value)
        } catch {
            try? FileManager.default.removeItem(atPath: file)
            return .corrupt("\(error)")
        }
    }

    /// Stores a result; values that cannot be stored (models) are ignored. Returns whether it was stored.
    @discardableResult
    public func write(_ value: Value, key: String) throws -> Bool {
        guard let (tensors, metadata) = ResultCache.encode(value) else { return false }
        let file = path(key)
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var withChecksum = metadata
        withChecksum[ResultCache.keyField] = key
        withChecksum[ResultCache.checksumField] = ResultCache.entryChecksum(tensors, metadata: withChecksum)
        try SafeTensorsWriter.write(tensors, metadata: withChecksum, to: file)
        return true
    }

    /// Whether a value of this type can be stored.
    public static func isStorable(_ value: Value) -> Bool { encode(value) != nil }

    static func encode(_ value: Value) -> (tensors: [String: Tensor], metadata: [String: String])? {
        switch value {
        case .image(let image), .mask(let image):
            let kind = if case .image = value { "image" } else { "mask" }
            let meta = (try? JSONSerialization.data(withJSONObject: image.metadata, options: [.sortedKeys]))
                .flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
            var fields = ["sdflow.type": kind, "sdflow.bitDepth": String(image.bitDepth), "sdflow.metadata": meta]
            fields["sdflow.icc"] = image.embedded.iccProfile?.base64EncodedString()
            fields["sdflow.exif"] = image.embedded.exif?.base64EncodedString()
            return (["value": image.pixels], fields)
        case .latent(let t): return (["value": t], ["sdflow.type": "latent"])
        case .conditioning(let t, let pooled):
            return (["value": t].merging(pooled.map { ["pooled": $0] } ?? [:]) { a, _ in a }, ["sdflow.type": "conditioning"])
        case .tensor(let t): return (["value": t], ["sdflow.type": "tensor"])
        case .number(let n): return ([:], ["sdflow.type": "number", "sdflow.value": String(n.bitPattern)])
        case .text(let s): return ([:], ["sdflow.type": "text", "sdflow.value": s])
        case .model, .list, .failed: return nil
        }
    }

    struct DecodeError: Error, CustomStringConvertible {
        let description: String
    }

    static func decode(_ file: SafeTensorsFile) throws -> Value {
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name).copied() }
        guard file.metadata[checksumField] == entryChecksum(tensors, metadata: file.metadata) else {
            throw DecodeError(description: "checksum mismatch")
        }
        let value = tensors["value"]
        switch file.metadata["sdflow.type"] {
        case "image", "mask":
            guard let pixels = value, pixels.rank == 3 else { throw DecodeError(description: "no pixels") }
            let meta = file.metadata["sdflow.metadata"].flatMap { $0.data(using: .utf8) }
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: String] } ?? [:]
            let embedded = Image.Embedded(iccProfile: file.metadata["sdflow.icc"].flatMap { Data(base64Encoded: $0) },
                                          exif: file.metadata["sdflow.exif"].flatMap { Data(base64Encoded: $0) })
            let image = Image(pixels: pixels, metadata: meta, bitDepth: Int(file.metadata["sdflow.bitDepth"] ?? "8") ?? 8, embedded: embedded)
            return file.metadata["sdflow.type"] == "image" ? .image(image) : .mask(image)
        case "latent": if let value { return .latent(value) }
        case "conditioning": if let value { return .conditioning(value, pooled: tensors["pooled"]) }
        case "tensor": if let value { return .tensor(value) }
        case "number":
            if let bits = file.metadata["sdflow.value"].flatMap(UInt64.init) { return .number(Double(bitPattern: bits)) }
        case "text":
            if let text = file.metadata["sdflow.value"] { return .text(text) }
        default: break
        }
        throw DecodeError(description: "unknown or incomplete entry")
    }

    /// The metadata fields of an entry's own key and of its checksum.
    static let keyField = "sdflow.key", checksumField = "sdflow.checksum"

    /// SHA-256 over an entry's metadata (its key and stored values included; not the checksum
    /// field itself), in name order, and its tensors.
    static func entryChecksum(_ tensors: [String: Tensor], metadata: [String: String]) -> String {
        let fields = metadata.filter { $0.key != checksumField }.sorted { $0.key < $1.key }
        return Fingerprint.hash("entry\n" + fields.map { "\($0.key)=\($0.value.debugDescription)" }.joined(separator: "\n") + "\n" + checksum(tensors))
    }

    /// SHA-256 over the tensors' names, shapes and bytes, in name order.
    static func checksum(_ tensors: [String: Tensor]) -> String {
        var hasher = SHA256()
        for name in tensors.keys.sorted() {
            let t = tensors[name]!
            hasher.update(data: Data("\(name) \(t.shape)\n".utf8))
            t.withUnsafeBufferPointer { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        return Fingerprint.hex(hasher.finalize())
    }

    // MARK: - Size and eviction

    /// One stored entry.
    public struct Entry {
        public let key: String
        public let size: Int
        public let lastUsed: Date
    }

    /// Every entry, most recently used first.
    public func entries() -> [Entry] {
        var result: [Entry] = []
        let manager = FileManager.default
        for shard in (try? manager.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? manager.contentsOfDirectory(atPath: root + "/" + shard)) ?? [] where name.hasSuffix(".safetensors") {
                let file = root + "/" + shard + "/" + name
                guard let attributes = try? manager.attributesOfItem(atPath: file) else { continue }
                result.append(Entry(key: String(name.dropLast(".safetensors".count)),
                                    size: (attributes[.size] as? NSNumber)?.intValue ?? 0,
                                    lastUsed: attributes[.modificationDate] as? Date ?? .distantPast))
            }
        }
        return result.sorted { $0.lastUsed > $1.lastUsed }
    }

    /// Deletes least recently used entries until the total is within the budget, and stale
    /// temporary files of interrupted writes. Returns the number of entries deleted.
    @discardableResult
    public func evict() -> Int {
        lock.lock()
        defer { lock.unlock() }
        removeStaleTemporaryFiles()
        var total = 0
        var deleted = 0
        for entry in entries() {
            total += entry.size
            if total > budget {
                try? FileManager.default.removeItem(atPath: path(entry.key))
                deleted += 1
            }
        }
        return deleted
    }

    /// Deletes every entry.
    public func clear() throws {
        if FileManager.default.fileExists(atPath: root) { try FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    private func removeStaleTemporaryFiles() {
        let manager = FileManager.default
        let hourAgo = Date().addingTimeInterval(-3600)
        for shard in (try? manager.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? manager.contentsOfDirectory(atPath: root + "/" + shard)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                let file = root + "/" + shard + "/" + name
                if let date = (try? manager.attributesOfItem(atPath: file))?[.modificationDate] as? Date, date < hourAgo {
                    try? manager.removeItem(atPath: file)
                }
            }
        }
    }
}
