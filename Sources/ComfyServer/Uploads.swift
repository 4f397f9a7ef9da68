import Foundation
import Hummingbird
import HummingbirdWebSocket
import ImageIO
import MultipartKit
import TensorCore

/// `POST /upload/image` and `/upload/mask`: images the editor uploads into the input (or temp,
/// output) folder, as ComfyUI stores them. A file that is not a PNG or JPEG is refused; a name
/// already taken gets " (1)", " (2)", ... unless `overwrite` is "true".
extension ComfyServer {
    func uploadRoutes(_ router: Router<BasicWebSocketRequestContext>, prefix: String) {
        router.post("\(prefix)/upload/image") { [self] request, _ in try await upload(request, mask: false) }
        router.post("\(prefix)/upload/mask") { [self] request, _ in try await upload(request, mask: true) }
    }

    private func upload(_ request: Request, mask: Bool) async throws -> Response {
        var request = request
        guard let contentType = request.headers[.contentType], let boundary = Self.boundary(contentType) else {
            return json(["error": "expected multipart/form-data"], status: .badRequest)
        }
        let parts: [String: FormPart]
        do { parts = try Self.formParts(try await request.collectBody(upTo: options.maxBody), boundary: boundary) } catch {
            return json(["error": "the form cannot be read: \(error)"], status: .badRequest)
        }
        guard let file = parts["image"], let name = file.filename.map({ ($0 as NSString).lastPathComponent }), !name.isEmpty else {
            return json(["error": "no 'image' file in the form"], status: .badRequest)
        }
        let kind = parts["type"]?.text ?? "input", subfolder = parts["subfolder"]?.text ?? ""
        guard ["input", "temp", "output"].contains(kind) else { return json(["error": "type must be input, temp or output"], status: .badRequest) }
        var image: Image
        do { image = try ImageFile.decode(file.data, name: name) } catch {
            return json(["error": "\(name) is not an image sdflow reads (PNG or JPEG): \(error)"], status: .badRequest)
        }
        if mask {
            // The mask's alpha becomes the alpha of the image it was painted on (ComfyUI's mask editor).
            guard let reference = parts["original_ref"]?.text.flatMap({ try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }),
                  let original = reference["filename"] as? String else {
                return json(["error": "no original_ref {filename, subfolder, type} in the form"], status: .badRequest)
            }
            let originalPath: String
            do {
                originalPath = try options.folders.path(reference["type"] as? String ?? "input", original,
                                                        subfolder: reference["subfolder"] as? String ?? "")
            } catch { return json(["error": "\(error)"], status: .badRequest) }
            let base = try ImageFile.read(originalPath)
            guard image.hasAlpha, image.width == base.width, image.height == base.height else {
                return json(["error": "the mask must have an alpha channel and the original's size \(base.width)x\(base.height)"], status: .badRequest)
            }
            image = Self.withAlpha(of: image, on: base)
        }
        var filename = name
        let folderPath: String
        do { folderPath = try options.folders.path(kind, ".", subfolder: subfolder, mustExist: false) } catch {
            return json(["error": "\(error)"], status: .badRequest)
        }
        if parts["overwrite"]?.text != "true" {
            let stem = (name as NSString).deletingPathExtension, ext = (name as NSString).pathExtension
            var counter = 1
            while FileManager.default.fileExists(atPath: (folderPath as NSString).appendingPathComponent(filename)) {
                filename = "\(stem) (\(counter))" + (ext.isEmpty ? "" : ".\(ext)")
                counter += 1
            }
        }
        let path: String
        do { path = try options.folders.path(kind, filename, subfolder: subfolder, mustExist: false) } catch {
            return json(["error": "\(error)"], status: .badRequest)
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if mask {
            try ImageFile.write(image, to: path)
        } else {
            try AtomicFile.write(file.data, to: path)  // as uploaded, bytes unchanged
        }
        return json(["name": filename, "subfolder": subfolder, "type": kind])
    }

    /// `base`'s colour with the alpha channel of `mask` (both C x H x W, the same size).
    static func withAlpha(of mask: Image, on base: Image) -> Image {
        let colour = base.hasAlpha ? base.channels - 1 : base.channels, plane = base.width * base.height
        var result = Image(width: base.width, height: base.height, channels: colour + 1)
        let out = result.pixels.mutablePointer(), b = base.pixels.pointer, m = mask.pixels.pointer
        for i in 0..<(colour * plane) { out[i] = b[i] }
        let alpha = (mask.channels - 1) * plane
        for i in 0..<plane { out[colour * plane + i] = m[alpha + i] }
        return result
    }

    /// The boundary of a `multipart/form-data` content type.
    static func boundary(_ contentType: String) -> String? {
        guard contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" { return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    /// One field of a form: its file name (for files) and bytes.
    struct FormPart {
        var filename: String?
        var data = Data()
        var text: String? { String(data: data, encoding: .utf8) }
    }

    /// The fields of a `multipart/form-data` body by name (MultipartKit's parser).
    static func formParts(_ body: ByteBuffer, boundary: String) throws -> [String: FormPart] {
        var parts: [String: FormPart] = [:]
        var current = FormPart(), name: String?
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { field, value in
            guard field.lowercased() == "content-disposition" else { return }
            for item in value.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                let unquoted = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                if pair[0] == "name" { name = unquoted } else if pair[0] == "filename" { current.filename = unquoted }
            }
        }
        parser.onBody = { buffer in current.data.append(contentsOf: buffer.readableBytesView) }
        parser.onPartComplete = {
            if let name { parts[name] = current }
            (current, name) = (FormPart(), nil)
        }
        try parser.execute(body)
        return parts
    }
}
