import Foundation

/// The folders a server reads and writes, and the only places it does: models (ComfyUI's layout:
/// `checkpoints/`, `loras/`, `vae/`, `upscale_models/`, `embeddings/`, `controlnet/`), input images, outputs
/// and temporary previews. A file name a client gives is confined to its folder: no absolute
/// paths, no `..`, and no symbolic link that leads out of it.
public struct Folders: Sendable {
    public let models: URL
    public let input: URL
    public let output: URL
    public let temp: URL
    /// The web editor's settings and saved workflows (ComfyUI's `user/default`).
    public let user: URL

    public init(models: String, input: String, output: String, temp: String? = nil, user: String? = nil) throws {
        func folder(_ path: String) throws -> URL {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        }
        self.models = try folder(models)
        self.input = try folder(input)
        self.output = try folder(output)
        self.temp = try folder(temp ?? (output as NSString).appendingPathComponent("../temp"))
        self.user = try folder(user ?? (output as NSString).appendingPathComponent("../user/default"))
    }

    /// A name refused, saying why.
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    /// The folder of a ComfyUI folder kind: "input", "output", "temp", or a models subfolder.
    public func root(_ kind: String) throws -> URL {
        switch kind {
        case "input": return input
        case "output": return output
        case "temp": return temp
        case "user": return user
        case "checkpoints", "loras", "vae", "upscale_models", "embeddings", "controlnet":
            return models.appendingPathComponent(kind)
        default: throw Refused(description: "unknown folder type '\(kind)'")
        }
    }

    /// `name` (optionally in `subfolder`) inside the folder of `kind`, refused when it would lead
    /// out of it; `mustExist` also refuses a missing file.
    public func path(_ kind: String, _ name: String, subfolder: String = "", mustExist: Bool = true) throws -> String {
        let root = try root(kind)
        for part in [subfolder, name] {
            guard !part.hasPrefix("/"), !part.split(separator: "/").contains(".."), !part.contains("\0") else {
                throw Refused(description: "'\(part)' is not a name inside the \(kind) folder")
            }
        }
        guard !name.isEmpty else { throw Refused(description: "no file name") }
        var url = root
        if !subfolder.isEmpty { url.appendPathComponent(subfolder) }
        url.appendPathComponent(name)
        let resolved = url.standardizedFileURL.resolvingSymlinksInPath()
        guard resolved.path == root.path || resolved.path.hasPrefix(root.path + "/") else {
            throw Refused(description: "'\(name)' leads out of the \(kind) folder")
        }
        if mustExist && !FileManager.default.fileExists(atPath: resolved.path) {
            throw Refused(description: "'\(name)' is not in the \(kind) folder (\(root.path))")
        }
        return resolved.path
    }

    /// The names of the files in a models subfolder (ComfyUI's model lists), sorted.
    public func files(_ kind: String) -> [String] {
        guard let root = try? root(kind),
              let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }

    /// Where outputs named by `prefix` go in `kind` (the prefix may name a subfolder): the folder,
    /// confined to `kind`'s, the file names' stem and the subfolder. Reads and writes nothing.
    public func outputPlace(_ kind: String, prefix: String) throws -> (folder: String, base: String, subfolder: String) {
        let parts = prefix.split(separator: "/").map(String.init)
        let base = parts.last ?? "ComfyUI", subfolder = parts.dropLast().joined(separator: "/")
        return (try path(kind, subfolder.isEmpty ? "." : subfolder, mustExist: false), base, subfolder)
    }

    /// The next free ComfyUI-style output name for `prefix` in `kind`: `prefix_00001_.png`, counting
    /// up from the highest number there (the prefix may name a subfolder).
    public func nextOutput(_ kind: String, prefix: String) throws -> (path: String, filename: String, subfolder: String) {
        let (folder, base, subfolder) = try outputPlace(kind, prefix: prefix)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        let used = existing.compactMap { name -> Int? in
            guard name.hasPrefix(base + "_"), name.hasSuffix("_.png") else { return nil }
            return Int(name.dropFirst(base.count + 1).dropLast(5))
        }
        let filename = base + "_" + String(format: "%05d", (used.max() ?? 0) + 1) + "_.png"
        return ((folder as NSString).appendingPathComponent(filename), filename, subfolder)
    }
}
