import Crypto
import Foundation

/// Content fingerprints for cache keys: SHA-256 over what determines a result.
enum Fingerprint {
    /// The hex SHA-256 of a string.
    static func hash(_ text: String) -> String { hex(SHA256.hash(data: Data(text.utf8))) }

    static func hex<D: Digest>(_ digest: D) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    /// Files up to this size are hashed whole; larger ones (checkpoints) by size, modification
    /// time and their first and last megabyte, which changes whenever the file is rewritten.
    static let fullHashLimit = 64 << 20

    /// A file or folder that is not there (a batch item's own file, `latents/{stem}.safetensors`).
    struct Missing: Error, CustomStringConvertible {
        let path: String
        var description: String { "no such file or folder: \(path)" }
    }

    /// A fingerprint of a file, or of every file under a folder (names included).
    static func path(_ path: String) throws -> String {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw Missing(path: path) }
        if !isFolder.boolValue { return try file(path) }
        var parts: [String] = []
        let enumerator = FileManager.default.enumerator(atPath: path)
        var names: [String] = []
        while let name = enumerator?.nextObject() as? String {
            if name.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
            names.append(name)
        }
        for name in names.sorted() {
            var sub: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &sub), !sub.boolValue {
                parts.append(name + "=" + (try file(path + "/" + name)))
            }
        }
        return hash("folder\n" + parts.joined(separator: "\n"))
    }

    static func file(_ path: String) throws -> String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        if size <= fullHashLimit {
            hasher.update(data: try handle.readToEnd() ?? Data())
        } else {
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            hasher.update(data: Data("size \(size) modified \(modified)".utf8))
            hasher.update(data: try handle.read(upToCount: 1 << 20) ?? Data())
            try handle.seek(toOffset: UInt64(size - (1 << 20)))
            hasher.update(data: try handle.readToEnd() ?? Data())
        }
        return hex(hasher.finalize())
    }
}
