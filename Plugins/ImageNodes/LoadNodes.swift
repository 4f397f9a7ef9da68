import Foundation
import ImageIO
import NodeKit

/// `load_image`: one PNG or JPEG file.
struct LoadImage: Node {
    static let path = Param<String>("path", .inputPath(.file), help: "the image file")
    static let description = NodeDescription(
        name: "load_image", summary: "Load a PNG or JPEG image (EXIF orientation applied).",
        outputs: [.init("image", .image, help: "the image, with its alpha channel if it has one")],
        parameters: [path])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        var image = try ImageFile.read(path)
        image.metadata[ImageMetadataKey.source] = path
        return ["image": .image(image)]
    }
}

/// `load_mask`: a mask from an image file's alpha channel or luminance.
struct LoadMask: Node {
    static let path = Param<String>("path", .inputPath(.file), help: "the mask image")
    static let channel = Param<String>("channel", .choice(["luminance", "alpha"]), default: "luminance",
        help: "where the mask is read from")
    static let invert = Param<Bool>("invert", .boolean, default: false, help: "swap the masked and kept areas")
    static let description = NodeDescription(
        name: "load_mask", summary: "Load a mask (white = repaint) from an image's luminance or alpha channel.",
        outputs: [.init("mask", .mask, help: "one-channel mask in [0, 1]")],
        parameters: [path, channel, invert])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let path = try context[Self.path]
        let image = try ImageFile.read(path)
        if try context[Self.channel] == "alpha" && !image.hasAlpha {
            throw NodeError.invalidInput("\(path) has no alpha channel; use channel: luminance")
        }
        var mask = image.mask(fromAlpha: try context[Self.channel] == "alpha")
        if try context[Self.invert] { mask = mask.inverted() }
        mask.metadata[ImageMetadataKey.source] = path
        return ["mask": .mask(mask)]
    }
}

/// `load_images`: every image of a folder as a list (the downstream graph runs per image),
/// with masks paired by file name when a mask folder is given. It streams: the folder is listed
/// first and each image (and its mask) is read only when the batch reaches it.
struct LoadImages: StreamingListNode {
    static let folder = Param<String>("folder", .inputPath(.folder), help: "the folder to read")
    static let pattern = Param<String>("pattern", .text, default: "*.png,*.jpg,*.jpeg",
        help: "comma-separated file name patterns (case-insensitive)")
    static let maskFolder = Param<String>("mask_folder", .inputPath(.folder), default: "",
        help: "a folder of masks named like the images (any image extension); empty for none")
    static let description = NodeDescription(
        name: "load_images",
        summary: "Load every image of a folder as a list; nodes downstream run once per image.",
        outputs: [
            .init("images", .list(.image), help: "the images, sorted by file name"),
            .init("masks", .list(.mask), help: "the masks paired by file name (empty without mask_folder)"),
        ],
        parameters: [folder, pattern, maskFolder])

    static func items(_ context: NodeContext) throws -> [ListItem] {
        let folder = try context[Self.folder]
        let patterns = try context[Self.pattern].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { name in !name.hasPrefix(".") && patterns.contains { fnmatch($0, name.lowercased(), 0) == 0 } }
            .sorted()
        guard !files.isEmpty else {
            throw NodeError.failed("no files matching \(patterns.joined(separator: ", ")) in \(folder)")
        }
        return files.map { ListItem(path: folder + "/" + $0, relativePath: $0) }
    }

    static func produce(_ item: ListItem, context: NodeContext) throws -> [String: Value] {
        let maskFolder = try context[Self.maskFolder]
        do {
            var image = try ImageFile.read(item.path)
            image.metadata[ImageMetadataKey.source] = item.path
            guard !maskFolder.isEmpty else { return ["images": .image(image), "masks": .failed("load_images has no mask_folder, so it gives no masks", source: item.path)] }
            guard let maskPath = try maskFile(named: item.stem, in: maskFolder) else {
                throw NodeError.failed("\(item.path): no mask named \(item.stem).* in the mask folder")
            }
            var mask = try ImageFile.read(maskPath).mask(fromAlpha: false)
            mask.metadata[ImageMetadataKey.source] = item.path
            return ["images": .image(image), "masks": .mask(mask)]
        } catch {
            return ["images": .failed("\(error)", source: item.path), "masks": .failed("\(error)", source: item.path)]
        }
    }

    /// The mask file whose name without extension is `stem`, if any (the usual image extensions
    /// are tried first, so a large folder is not listed once per item).
    static func maskFile(named stem: String, in folder: String) throws -> String? {
        for ext in ["png", "jpg", "jpeg", "PNG", "JPG", "JPEG"] where FileManager.default.fileExists(atPath: "\(folder)/\(stem).\(ext)") {
            return "\(folder)/\(stem).\(ext)"
        }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            throw NodeError.failed("cannot read the mask folder \(folder)")
        }
        return names.sorted().first { !$0.hasPrefix(".") && URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent == stem }
            .map { folder + "/" + $0 }
    }
}
