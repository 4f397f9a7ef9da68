import Crypto
import Foundation
import Synchronization

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

    /// A fingerprint of a file, or of every file under a folder (names included); `known` gives
    /// back the fingerprints of files that have not changed since it last saw them.
    static func path(_ path: String, known: FileFingerprints? = nil) throws -> String {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw Missing(path: path) }
        let file = { (path: String) throws -> String in try known?.fingerprint(path) ?? Self.file(path) }
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

/// File fingerprints remembered across runs (a server keeps one for its life), each given back
/// while the file's size, modification and change times and inode are those it was hashed with.
public final class FileFingerprints: Sendable {
    private let known = Mutex<[String: (stamp: [Int], fingerprint: String)]>([:])

    public init() {}

    /// What `stat` says about a file that changes when it is rewritten or replaced.
    private static func stamp(_ path: String) -> [Int]? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return [Int(info.st_dev), Int(info.st_ino), Int(info.st_size), info.st_mtim.tv_sec, info.st_mtim.tv_nsec,
                info.st_ctim.tv_sec, info.st_ctim.tv_nsec]
    }

    /// The content fingerprint of a file, hashed again only when its stamp changed.
    public func fingerprint(_ path: String) throws -> String {
        guard let stamp = Self.stamp(path) else { return try Fingerprint.file(path) }
        if let hit = known.withLock({ $0[path] }), hit.stamp == stamp { return hit.fingerprint }
        let fingerprint = try Fingerprint.file(path)
        // A file written while it was read is not remembered (its stamp moved).
        if Self.stamp(path) == stamp { known.withLock { $0[path] = (stamp, fingerprint) } }
        return fingerprint
    }
}
